#!/usr/bin/env python3
"""Builds the family table from src/family/family_*.c alone and checks that the
code agrees with it (docs/families.md, "Adding a gateway family"):

- every src/family/family_NAME.c defines exactly one `const struct family
  family_NAME` whose .name is "NAME";
- family.c's table holds exactly those families (one row each), and
  src/meson.build compiles exactly those files (and family/family.c);
- no other file of src/ names a family: no string literal holding a
  family's name and no identifier family_NAME or NAME_* (comments may, and
  so may the prose of PROSE below: help text that documents the families).

Usage: check_families.py [SOURCE_ROOT]. Exits 1, saying why, on a mismatch.
"""
import os
import re
import sys

root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
src = os.path.join(root, "src")
famdir = os.path.join(src, "family")


def sources():
    """Every .c and .h of src/, as paths relative to src/."""
    out = []
    for d, _, names in os.walk(src):
        for n in names:
            if n.endswith((".c", ".h")):
                out.append(os.path.relpath(os.path.join(d, n), src))
    return sorted(out)

problems = []


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def strip_comments(text):
    """C text without its comments (string literals kept, so a "/*" inside
    one is not taken for a comment)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if c == '"' or c == "'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            i = j + 1
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = n if j < 0 else j + 2
            out.append(" ")
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        else:
            out.append(c)
            i += 1
    return "".join(out)


# Prose that documents families to a person, not code that decides by one:
# (file, the start of the literal).
PROSE = {
    ("payrelayctl.c", "  --status S   the gateway's raw status"),
    ("payrelayctl.c", "               payindex returncode; gatepay has none)"),
    ("payrelayctl.c", "query (no gateway knows them). epay RSA channels"),
    ("crypto.c", "public keys cannot be loaded by the crypto library"),
}

STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"')

# The families, from their files alone.
families = {}
for fn in sorted(os.listdir(famdir)):
    m = re.fullmatch(r"family_([a-z0-9]+)\.c", fn)
    if not m:
        continue
    name = m.group(1)
    text = strip_comments(read(os.path.join(famdir, fn)))
    defs = re.findall(r"^const struct family (family_\w+) = \{(.*?)^\};", text, re.M | re.S)
    if len(defs) != 1:
        problems.append("%s: defines %d `const struct family`, want 1" % (fn, len(defs)))
        continue
    ident, body = defs[0]
    if ident != "family_" + name:
        problems.append("%s: defines %s, want family_%s" % (fn, ident, name))
    nm = re.search(r'\.name\s*=\s*"([^"]*)"', body)
    if nm is None or nm.group(1) != name:
        problems.append('%s: .name is %s, want "%s"' % (fn, nm.group(1) if nm else "missing", name))
    families[name] = fn

if not families:
    problems.append("no src/family/family_*.c: no family at all")

# family.c's table: its rows, exactly the families.
table = strip_comments(read(os.path.join(famdir, "family.c")))
m = re.search(r"families\[\]\s*=\s*\{(.*?)\};", table, re.S)
rows = re.findall(r"&family_(\w+)", m.group(1)) if m else []
if m is None:
    problems.append("family.c: no `families[]` table")
for name in families:
    if rows.count(name) != 1:
        problems.append("family.c: the table has %d rows for family_%s, want 1" % (rows.count(name), name))
for name in set(rows) - set(families):
    problems.append("family.c: the table names family_%s, which no src/family/family_%s.c defines" % (name, name))
externs = re.findall(r"^extern const struct family family_(\w+);", table, re.M)
if sorted(externs) != sorted(families):
    problems.append("family.c: declares the families %s, want %s"
                    % (", ".join(sorted(externs)), ", ".join(sorted(families))))

# src/meson.build compiles exactly those files.
built = re.findall(r"'family/family_(\w+)\.c'", read(os.path.join(src, "meson.build")))
if sorted(built) != sorted(families):
    problems.append("src/meson.build: compiles the families %s, want %s"
                    % (", ".join(sorted(built)), ", ".join(sorted(families))))

# Nothing else names a family.
for rel in sources():
    fn = os.path.basename(rel)
    if rel in ("family/family.c",) or rel in ("family/" + f for f in families.values()):
        continue
    text = strip_comments(read(os.path.join(src, rel)))
    for name in families:
        word = re.compile(r"\b%s\b" % re.escape(name), re.I)
        for s in STRING.findall(text):
            if any(f == fn and s[1:].startswith(start) for f, start in PROSE):
                continue
            if word.search(s):
                problems.append("src/%s: names family %s in %s" % (rel, name, s))
        for ident in re.findall(r"\b(?:family_%s|%s_\w+)\b" % (name, name), text, re.I):
            problems.append("src/%s: names family %s (%s)" % (rel, name, ident))

for p in problems:
    print("check_families: " + p, file=sys.stderr)
if problems:
    sys.exit(1)
print("check_families: %d families (%s), each one file, one row, one meson line"
      % (len(families), ", ".join(sorted(families))))
