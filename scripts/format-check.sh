#!/usr/bin/env bash
# Fails when a C file differs from .clang-format's layout. Fix with:
#   clang-format -i src/*/*.[ch] tests/unit/*.[ch]
set -euo pipefail
cd "$(dirname "$0")/.."
files=(src/*/*.[ch] tests/unit/*.[ch])
if clang-format --dry-run --Werror "${files[@]}"; then
  echo "format: ${#files[@]} files follow .clang-format"
else
  echo "format: run clang-format -i on the files above" >&2
  exit 1
fi
