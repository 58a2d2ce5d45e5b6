"""man-coverage: the manual pages name everything the code's own tables hold.

- payrelayd.conf(5): every key of src/core/config.c's `keys[]` table, as an
  `.It Cm KEY` of the `.Ss "[SECTION]"` its table entry names (sections from
  `single_names[]`, and `[kind:NAME]` for the named kinds: SEC_CHANNEL is
  `[channel:NAME]`).
- payrelayctl(1): every command of src/ctl/payrelayctl.c's `commands[]` table as
  `Cm NAME [SUB]` in its COMMANDS section, and every long option of its
  `struct option` tables as `Fl -NAME`.
- payrelayd(8): every long option of payrelayd.c's `opts[]` as `Fl -NAME`.
- And the other way round: no key or command the code does not have.
- Each page is lint-free for groff (`man --warnings`, what lintian runs) and,
  when it is installed, for `mandoc -Tlint`.

The lists are parsed from the C sources rather than asked of the programs, so
that nothing hidden is added to the daemon for it. A table that no longer
parses fails the test: it is never a silent pass.
Usage: check_man.py SOURCE_ROOT
"""

import os
import re
import shutil
import subprocess
import sys

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg)


def ok(msg):
    print("ok: " + msg)


def read(root, rel):
    with open(os.path.join(root, rel), encoding="utf-8") as f:
        return f.read()


def block(text, start_re, what):
    """The text from the line matching start_re to the first `};` after it."""
    m = re.search(start_re, text, re.M)
    if not m:
        fail("cannot find %s: update tests/man/check_man.py" % what)
        return ""
    end = text.find("\n};", m.end())
    return text[m.end():end if end >= 0 else len(text)]


def config_keys(root):
    """[(section as the man page heads it, key)] from src/core/config.c."""
    src = read(root, "src/core/config.c")
    enum = block(src, r"^enum sect_kind \{", "enum sect_kind")
    kinds = re.findall(r"^\s*(SEC_[A-Z_]+)", enum, re.M)
    singles = re.findall(r'"([a-z_]+)"',
                         block(src, r"single_names\[\] = \{", "single_names[]").split(";")[0])
    names = {}
    if "SEC_DAEMON" in kinds:
        first = kinds.index("SEC_DAEMON")
        for i, name in enumerate(singles):
            if first + i < len(kinds):
                names[kinds[first + i]] = "[%s]" % name
    table = block(src, r"^\} keys\[K_COUNT\] = \{", "the keys[] table of config.c")
    keys = []
    for kind, key in re.findall(r'\[K_[A-Z0-9_]+\]\s*=\s*\{\s*(SEC_[A-Z_]+),\s*"([^"]+)"', table):
        section = names.get(kind, "[%s:NAME]" % kind[4:].lower())
        keys.append((section, key))
    if len(keys) < 20:
        fail("only %d keys parsed from config.c's table: update check_man.py" % len(keys))
    return keys


def ctl_commands(root):
    """["status", "events show", ...] and the long options of payrelayctl.c."""
    src = read(root, "src/ctl/payrelayctl.c")
    table = block(src, r"^static const struct command commands\[\] = \{", "commands[] of payrelayctl.c")
    cmds = []
    for name, sub in re.findall(r'^\t\{\s*"([^"]+)",\s*(?:NULL|"([^"]+)")', table, re.M):
        cmds.append(name + (" " + sub if sub else ""))
    if len(cmds) < 5:
        fail("only %d commands parsed from payrelayctl.c: update check_man.py" % len(cmds))
    opts = sorted(set(re.findall(r'\{\s*"([a-z][a-z0-9-]*)",\s*(?:no|required|optional)_argument', src)))
    return cmds, opts


def daemon_options(root):
    src = read(root, "src/daemon/payrelayd.c")
    opts = sorted(set(re.findall(r'\{\s*"([a-z][a-z0-9-]*)",\s*(?:no|required|optional)_argument', src)))
    if "check-config" not in opts:
        fail("payrelayd.c's options did not parse (%r): update check_man.py" % opts)
    return opts


def man_sections(text, macro):
    """{heading: body} for each `.Sh` or `.Ss` heading of an mdoc page."""
    out, cur = {}, None
    for line in text.splitlines():
        m = re.match(r"^\.%s\s+(.*)$" % macro, line)
        if m:
            cur = m.group(1).strip().strip('"').replace("\\&", "")
            out[cur] = []
        elif cur is not None:
            if macro == "Ss" and line.startswith(".Sh"):
                cur = None
            else:
                out[cur].append(line)
    return {k: "\n".join(v) for k, v in out.items()}


def has_flag(text, name):
    # `.Fl \-name` or `Fl -name` (mdoc prints the first dash itself).
    pat = r"\bFl (\\-|-)%s(\s|$)" % re.escape(name).replace("\\-", "(\\\\-|-)")
    return re.search(pat, text, re.M) is not None


def check_conf_page(root, keys):
    page = read(root, "man/payrelayd.conf.5")
    subs = man_sections(page, "Ss")
    missing = []
    for section, key in keys:
        body = subs.get(section)
        if body is None:
            missing.append("%s (no .Ss \"%s\")" % (key, section))
            continue
        items = [l for l in body.splitlines() if l.startswith(".It ")]
        if not any(re.search(r"\bCm %s(\s|$)" % re.escape(key), l) for l in items):
            missing.append("%s %s" % (section, key))
    if missing:
        fail("payrelayd.conf.5 lacks %d key(s) of src/core/config.c: %s"
             % (len(missing), ", ".join(missing)))
    else:
        ok("payrelayd.conf.5 describes all %d keys of src/core/config.c, each in its section"
           % len(keys))
    # And nothing the code does not accept (a key renamed or removed).
    known = set(keys)
    stale = []
    for section, body in subs.items():
        for line in body.splitlines():
            if line.startswith(".It "):
                stale += ["%s %s" % (section, k) for k in re.findall(r"\bCm (\S+) No =", line)
                          if (section, k) not in known]
    if stale:
        fail("payrelayd.conf.5 describes key(s) src/core/config.c does not accept: %s"
             % ", ".join(stale))


def check_ctl_page(root, cmds, opts):
    page = read(root, "man/payrelayctl.1")
    body = man_sections(page, "Sh").get("COMMANDS", "")
    if not body:
        fail("payrelayctl.1 has no COMMANDS section")
    missing = []
    for cmd in cmds:
        if not re.search(r"^\.(It )?Cm %s(\s|$)" % re.escape(cmd), body, re.M):
            missing.append(cmd)
    if missing:
        fail("payrelayctl.1 lacks command(s) of payrelayctl.c: %s" % ", ".join(missing))
    else:
        ok("payrelayctl.1 describes all %d commands: %s" % (len(cmds), ", ".join(cmds)))
    # And none that payrelayctl does not have (`help` is handled by main()).
    lines = body.splitlines()
    heads = [l for l in lines if l.startswith(".It Cm ")]
    heads += [lines[i + 1] for i, l in enumerate(lines[:-1]) if l.startswith(".It Xo")]
    stale = []
    for h in heads:
        m = re.match(r"^\.(?:It )?Cm ((?:[a-z][a-z0-9-]*)(?: [a-z][a-z0-9-]*)*)", h)
        name = m.group(1) if m else h
        if name != "help" and name not in cmds:
            stale.append(name)
    if stale:
        fail("payrelayctl.1 describes command(s) payrelayctl.c does not have: %s"
             % ", ".join(stale))
    missing = [o for o in opts if not has_flag(page, o)]
    if missing:
        fail("payrelayctl.1 lacks option(s) of payrelayctl.c: %s"
             % ", ".join("--" + o for o in missing))
    else:
        ok("payrelayctl.1 names all %d long options" % len(opts))


def check_daemon_page(root, opts):
    page = read(root, "man/payrelayd.8")
    missing = [o for o in opts if not has_flag(page, o)]
    if missing:
        fail("payrelayd.8 lacks option(s) of payrelayd.c: %s"
             % ", ".join("--" + o for o in missing))
    else:
        ok("payrelayd.8 names all %d options: %s" % (len(opts), ", ".join(opts)))


def check_lint(root):
    env = dict(os.environ, LC_ALL="C.UTF-8", MANROFFSEQ="", MANWIDTH="80")
    man = shutil.which("man")
    mandoc = shutil.which("mandoc")
    for page in ("payrelayd.8", "payrelayctl.1", "payrelayd.conf.5"):
        path = os.path.join(root, "man", page)
        if man:
            # What lintian's manpages check runs: any output on stderr is a tag.
            p = subprocess.run([man, "--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z", path],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
            if p.returncode != 0 or p.stderr.strip():
                fail("man --warnings %s: rc=%d\n%s" % (page, p.returncode, p.stderr.decode()))
            else:
                ok("man --warnings: %s renders without a warning" % page)
        if mandoc:
            p = subprocess.run([mandoc, "-Tlint", "-Wwarning", path],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
            if p.returncode != 0:
                fail("mandoc -Tlint %s:\n%s" % (page, p.stdout.decode()))
            else:
                ok("mandoc -Tlint: %s" % page)
    if not man and not mandoc:
        print("note: neither man nor mandoc is installed: the pages were not linted "
              "(lintian does it in the package test)")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    root = sys.argv[1]
    keys = config_keys(root)
    cmds, ctl_opts = ctl_commands(root)
    d_opts = daemon_options(root)
    check_conf_page(root, keys)
    check_ctl_page(root, cmds, ctl_opts)
    check_daemon_page(root, d_opts)
    check_lint(root)
    if failures:
        print("%d failure(s)" % len(failures))
        sys.exit(1)


if __name__ == "__main__":
    main()
