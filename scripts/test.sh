#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite twice: a
# warnings-as-errors build, then an ASan+UBSan build (the package suite, which
# builds, installs and purges the .deb, runs in the first only); the README's
# demo (scripts/demo.sh --check, on the first build); then the fuzz targets
# (scripts/fuzz.sh, 20 s each) unless PAYRELAY_SKIP_FUZZ=1.
# Usage: scripts/test.sh [--quick]   (--quick: the first build only, no fuzzing)
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD

[ -d ../shared/vectors ] || { echo "test: ../shared/vectors is missing (the test vectors live beside the checkout)" >&2; exit 1; }
# valgrind: the valgrind suite of tests/integration; dpkg-dev, debhelper and
# lintian: the package suite (tests/package builds the .deb with scripts/deb.sh);
# prometheus: promtool (contrib/prometheus).
bash scripts/deps.sh valgrind dpkg-dev debhelper lintian prometheus

status=0
passed=0
failed=0
run_suite() {
  local dir=$1; shift
  echo "== build $dir ($*)"
  bash scripts/build.sh "$dir" "$@"
  echo "== test $dir"
  if ! meson test -C "$dir" --print-errorlogs --num-processes 2; then
    status=1
  fi
  # One line per test in meson's JSON log: count the outcomes.
  passed=$((passed + $(grep -c '"result": "OK"' "$dir/meson-logs/testlog.json" || true)))
  failed=$((failed + $(grep -vc '"result": "OK"' "$dir/meson-logs/testlog.json" || true)))
}

run_suite build-test -Dwerror=true --buildtype=debugoptimized
# The README's first command, non-interactive, on that build: one more suite.
echo "== demo (scripts/demo.sh --check)"
if PAYRELAY_DEMO_BUILD=build-test bash scripts/demo.sh --check; then
  passed=$((passed + 1))
else
  status=1
  failed=$((failed + 1))
fi
if [ "${1:-}" != "--quick" ]; then
  # meson 1.0 does not set UBSAN_OPTIONS: tests/meson.build does.
  run_suite build-asan -Dwerror=true -Db_sanitize=address,undefined -Db_lundef=false --buildtype=debug
fi
cd "$top"
# libFuzzer on the pure logic (scripts/fuzz.sh), counted as one more suite.
if [ "${PAYRELAY_SKIP_FUZZ:-}" != "1" ] && [ "${1:-}" != "--quick" ]; then
  echo "== fuzz (20s per target)"
  if bash scripts/fuzz.sh 20; then
    passed=$((passed + 1))
  else
    status=1
    failed=$((failed + 1))
  fi
fi
echo "suites: $passed passed, $failed failed"
exit $status
