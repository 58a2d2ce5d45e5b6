#!/usr/bin/env python3
"""Every check test in tests/unit runs: each START_TEST(name) is added with
tcase_add_test exactly once, and each tcase_create'd case is added to its
suite. A merge that drops a `suite_add_tcase` line compiles cleanly and the
program still says 100%: this is the test that notices."""
import glob
import os
import re
import sys

root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
problems = []
files = sorted(glob.glob(os.path.join(root, "tests", "unit", "test_*.c")))
total = 0
for path in files:
    with open(path, encoding="utf-8") as f:
        text = re.sub(r"/\*.*?\*/", " ", f.read(), flags=re.S)
    name = os.path.relpath(path, root)
    defined = re.findall(r"^START_TEST\((\w+)\)", text, re.M)
    added = re.findall(r"\btcase_add_test\(\s*\w+\s*,\s*(\w+)\s*\)", text)
    for t in sorted(set(defined)):
        n = added.count(t)
        if n != 1:
            problems.append("%s: %s is added %d times, want 1" % (name, t, n))
    for t in sorted(set(added) - set(defined)):
        problems.append("%s: adds %s, which it does not define" % (name, t))
    cases = len(re.findall(r"\btcase_create\(", text))
    suites = len(re.findall(r"\bsuite_add_tcase\(", text))
    if cases != suites:
        problems.append("%s: %d tcase_create but %d suite_add_tcase" % (name, cases, suites))
    total += len(defined)
if not files:
    problems.append("no tests/unit/test_*.c")
for p in problems:
    print("check_unit_tests: " + p, file=sys.stderr)
if problems:
    sys.exit(1)
print("check_unit_tests: %d files, %d tests, each added once, every case in its suite"
      % (len(files), total))
