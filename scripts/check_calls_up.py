#!/usr/bin/env python3
"""No circle between the files of src/ (issue 11): when a.c calls a function
defined in b.c, b.c calls none defined in a.c. A header included back only
for its types (config.h's struct channel in the family files) is fine; a
subsystem that calls up into the file that drives it (the old
daemon_request_done, defined in payrelayd.c and called by ingest, deliver
and poll) is not.

Usage: check_calls_up.py [SOURCE_ROOT]. Exits 1, naming each pair.
"""
import glob
import os
import re
import sys

root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
src = os.path.join(root, "src")


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def code(text):
    """C text without comments and string literals."""
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    return re.sub(r'"(\\.|[^"\\\n])*"', '""', text)


defined, calls = {}, {}
for c in sorted(glob.glob(os.path.join(src, "**", "*.c"), recursive=True)):
    base = os.path.basename(c)[:-2]
    text = code(read(c))
    calls[base] = text
    # The project's style: the return type on its own line, the name at
    # column 0 ("int\nname(args)"), static functions left out.
    for m in re.finditer(r"^(static\s+)?[a-z][\w \t\*]*\n([a-z_][a-z0-9_]*)\(", text, re.M):
        if not m.group(1):
            defined.setdefault(m.group(2), base)

uses = {}
for a, text in calls.items():
    uses[a] = {}
    for name in set(re.findall(r"\b([a-z_][a-z0-9_]*)\s*\(", text)):
        b = defined.get(name)
        if b is not None and b != a:
            uses[a].setdefault(b, []).append(name)

# Pairs inside one module, sharing a private header: the store's engine
# (store.c) waits for replicas after a record step and asks store_record.c
# to read that step's answer. Named here so that no new pair slips in.
ALLOWED = {("store", "store_record")}

problems = []
for a in sorted(uses):
    for b in sorted(uses[a]):
        if b > a and a in uses.get(b, {}) and (a, b) not in ALLOWED:
            problems.append("%s.c and %s.c call each other: %s.c calls %s; %s.c calls %s"
                            % (a, b, a, ", ".join(sorted(uses[a][b])), b,
                               ", ".join(sorted(uses[b][a]))))
for p in problems:
    print("FAIL: " + p)
if problems:
    sys.exit(1)
print("calls-up: %d files, no two call each other" % len(calls))
