#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/) with clang, ASan and UBSan in
# build-fuzz, and runs each one for SECONDS (default 20) on a copy of its
# seed corpus. Fails on any crash, leak or timeout, naming the input.
# Usage: scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
secs=${1:-20}
case $secs in '' | *[!0-9]*) echo "fuzz: SECONDS must be a number" >&2; exit 2 ;; esac

bash scripts/deps.sh clang libclang-rt-14-dev

# No -Dwerror: the project's warnings are tuned for gcc (clang trips on some).
if [ ! -f build-fuzz/build.ninja ]; then
  CC=clang meson setup build-fuzz -Dfuzzing=true -Dtests=false --buildtype=debugoptimized >/dev/null
fi
ninja -C build-fuzz

# The verify target reads the epay RSA test key from here (without it, it
# fuzzes epay MD5 only).
if [ -z "${PAYRELAY_VECTORS:-}" ] && [ -d ../shared/vectors ]; then
  PAYRELAY_VECTORS=$(cd ../shared/vectors && pwd)
fi
export PAYRELAY_VECTORS=${PAYRELAY_VECTORS:-}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

work=$(mktemp -d /tmp/payrelay-fuzz.XXXXXX)
status=0
summary=()
for src in fuzz/fuzz_*.c; do
  name=$(basename "$src" .c)
  name=${name#fuzz_}
  bin=$top/build-fuzz/fuzz/fuzz_$name
  dir=$work/$name
  mkdir -p "$dir/corpus" "$dir/artifacts"
  cp fuzz/corpus/"$name"/* "$dir/corpus/" 2>/dev/null || true
  echo "== fuzz $name (${secs}s)"
  rc=0
  (cd "$dir" && "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$dir/artifacts/" -print_final_stats=1 corpus >"$dir/log" 2>&1) || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log" | tail -n1)
  cov=$(grep -o 'cov: [0-9]*' "$dir/log" | tail -n1 || true)
  crashes=$(find "$dir/artifacts" -type f | sort)
  if [ "$rc" -ne 0 ] || [ -n "$crashes" ]; then
    status=1
    tail -n 60 "$dir/log" >&2
    summary+=("fuzz $name: FAILED (exit $rc) input: ${crashes:-none saved} log: $dir/log")
  else
    summary+=("fuzz $name: ok, ${execs:-?} runs in ${secs}s, ${cov:-cov: ?}, corpus $(find "$dir/corpus" -type f | wc -l) files")
  fi
done
printf '%s\n' "${summary[@]}"
if [ "$status" -eq 0 ]; then
  rm -rf "$work"
else
  echo "fuzz: FAILED: crash inputs and logs kept in $work" >&2
fi
exit $status
