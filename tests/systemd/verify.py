"""systemd-verify: the unit as meson generates and installs it.

1. The generated unit, its ExecStart/ExecReload pointed at the freshly built
   payrelayd, passes `systemd-analyze verify` with no message about it (a
   copy with a bad key must be caught, or the check itself is broken).
2. `systemd-analyze security --offline=yes` rates it at most MAX_EXPOSURE.
3. The directives the daemon relies on are there (Type=notify, WatchdogSec,
   ExecReload by SIGHUP, the user the sysusers.d file creates, ...).
4. The sysusers.d and tmpfiles.d files create that user and /etc/payrelay
   root:payrelay 0750 in a scratch root.
5. `meson install --destdir` puts the unit in a directory systemd reads, with
   ExecStart naming the installed payrelayd.

No booted systemd is needed: systemd-analyze reads unit files offline. The
test fails (it does not skip) when systemd-analyze is missing.
Usage: verify.py --source-root DIR --build-root DIR --payrelayd PATH
                 [--meson PATH] --unit-installed yes|no
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

UNIT = "payrelayd.service"
MAX_EXPOSURE = 2.0
CONFIG = "/etc/payrelay/payrelayd.conf"

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg)


def ok(msg):
    print("ok: " + msg)


def run(argv, env_extra=None, timeout=120):
    env = dict(os.environ)
    # Deterministic output: no pager, no colour, default log level.
    env.update({"SYSTEMD_LOG_LEVEL": "info", "SYSTEMD_LOG_COLOR": "0",
                "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0", "LC_ALL": "C.UTF-8"})
    env.update(env_extra or {})
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, env=env, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace")


def find_tool(name):
    path = shutil.which(name)
    if path:
        return path
    for d in ("/usr/bin", "/bin", "/usr/sbin", "/sbin"):
        if os.access(os.path.join(d, name), os.X_OK):
            return os.path.join(d, name)
    return None


def parse_unit(text):
    """Section -> list of (key, value), in order; continuation lines joined."""
    sections, cur, pending = {}, None, ""
    for raw in text.splitlines():
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line[0] in "#;":
            continue
        m = re.match(r"^\[(.+)\]$", line)
        if m:
            cur = sections.setdefault(m.group(1), [])
            continue
        k, _, v = line.partition("=")
        cur.append((k.strip(), v.strip()))
    return sections


def values(sections, section, key):
    return [v for k, v in sections.get(section, []) if k == key]


def one(sections, section, key):
    v = values(sections, section, key)
    return v[-1] if v else None


def analyze_verify(analyze, unit_path):
    """(rc, lines about the unit, other lines) of systemd-analyze verify."""
    rc, out = run([analyze, "verify", "--man=no", "--recursive-errors=no", unit_path])
    ours, other = [], []
    for line in out.splitlines():
        if not line.strip():
            continue
        (ours if "payrelayd" in line else other).append(line)
    return rc, ours, other


def check_verify(analyze, unit_text, tmp):
    d = os.path.join(tmp, "verify")
    os.makedirs(d)
    path = os.path.join(d, UNIT)
    with open(path, "w", encoding="utf-8") as f:
        f.write(unit_text)
    # verify looks at ExecStart= only: the other commands must exist too.
    for k, v in parse_unit(unit_text).get("Service", []):
        if k.startswith("Exec"):
            exe = v.split()[0].lstrip("-@:+!")
            if not os.path.isabs(exe) or not os.access(exe, os.X_OK):
                fail("%s=%s: %s is not an executable absolute path" % (k, v, exe))
    rc, ours, other = analyze_verify(analyze, path)
    for line in other:
        print("note (not about payrelayd): " + line)
    if rc != 0 or ours:
        fail("systemd-analyze verify: rc=%d\n  %s" % (rc, "\n  ".join(ours)))
    else:
        ok("systemd-analyze verify: no warning or error about %s" % UNIT)

    # The same with an unknown key: proves that a problem shows up here.
    bad = os.path.join(tmp, "verify-bad")
    os.makedirs(bad)
    bad_path = os.path.join(bad, UNIT)
    with open(bad_path, "w", encoding="utf-8") as f:
        f.write(unit_text.replace("[Service]\n", "[Service]\nNoSuchDirective=1\n", 1))
    rc, ours, _ = analyze_verify(analyze, bad_path)
    if not any("NoSuchDirective" in line for line in ours):
        fail("systemd-analyze verify did not report an unknown key (rc=%d, output %r): "
             "this test cannot see problems in this environment" % (rc, ours))
    else:
        ok("self-check: an unknown key is reported (%s)" % ours[0].strip())
    return path


def check_security(analyze, path):
    rc, out = run([analyze, "security", "--offline=yes", "--no-pager", path])
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+) (\S+)", out)
    if not m:
        fail("systemd-analyze security --offline=yes gave no exposure level (rc=%d):\n%s"
             % (rc, out[-2000:]))
        return
    score = float(m.group(1))
    for line in out.splitlines():
        if line.startswith("\u2717"):          # the checks that cost something
            print("  exposed: " + " ".join(line.split()))
    if score > MAX_EXPOSURE:
        fail("exposure %.1f %s is above %.1f" % (score, m.group(2), MAX_EXPOSURE))
    else:
        ok("systemd-analyze security: exposure %.1f %s (limit %.1f)"
           % (score, m.group(2), MAX_EXPOSURE))


def check_directives(sec, sbindir, sysusers_text, tmpfiles_text):
    svc = "Service"

    def expect(key, want, got=None):
        got = one(sec, svc, key) if got is None else got
        if got != want:
            fail("%s=%s, expected %s" % (key, got, want))

    expect("Type", "notify")
    expect("ExecStart", "%s/payrelayd -c %s" % (sbindir, CONFIG))
    reload = values(sec, svc, "ExecReload")
    if reload != ["%s/payrelayd -c %s --check-config" % (sbindir, CONFIG),
                  "/bin/kill -HUP $MAINPID"]:
        fail("ExecReload must check the file, then send SIGHUP: %r" % reload)
    wd = one(sec, svc, "WatchdogSec") or ""
    m = re.fullmatch(r"(\d+)s", wd)
    if not m or not 2 <= int(m.group(1)) <= 300:
        fail("WatchdogSec=%r: expected a few seconds to a few minutes" % wd)
    expect("Restart", "on-failure")
    expect("RestartPreventExitStatus", "2")
    for key, want in (("ProtectSystem", "strict"), ("ProtectHome", "yes"),
                      ("PrivateTmp", "yes"), ("PrivateDevices", "yes"),
                      ("NoNewPrivileges", "yes"), ("CapabilityBoundingSet", ""),
                      ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
                      ("MemoryDenyWriteExecute", "yes"), ("RuntimeDirectory", "payrelay"),
                      ("SystemCallArchitectures", "native"),
                      # no core dump holds a key or the admin token
                      ("LimitCORE", "0")):
        expect(key, want)
    if values(sec, svc, "SystemCallFilter") != ["@system-service", "~@privileged @resources"]:
        fail("SystemCallFilter: %r" % values(sec, svc, "SystemCallFilter"))
    if one(sec, svc, "DynamicUser") not in (None, "no"):
        fail("DynamicUser is set: the files in /etc/payrelay are readable by group payrelay only")

    # The unit, sysusers.d and tmpfiles.d agree on the user and the directory.
    user, group = one(sec, svc, "User"), one(sec, svc, "Group")
    if not re.search(r"^u\s+%s\s" % re.escape(user or "?"), sysusers_text, re.M):
        fail("User=%s is not created by sysusers.conf" % user)
    if not re.search(r"^d\s+%s\s+0750\s+root\s+%s\s" % (re.escape(os.path.dirname(CONFIG)),
                                                       re.escape(group or "?")),
                     tmpfiles_text, re.M):
        fail("tmpfiles.conf does not make %s root:%s 0750" % (os.path.dirname(CONFIG), group))
    if not failures:
        ok("directives: Type=notify, WatchdogSec=%s, ExecReload check+SIGHUP, User=%s, "
           "hardening as SPEC 7" % (wd, user))


def check_snippets(sysusers_file, tmpfiles_file, tmp, group):
    sysusers = find_tool("systemd-sysusers")
    tmpfiles = find_tool("systemd-tmpfiles")
    if not sysusers or not tmpfiles:
        fail("systemd-sysusers or systemd-tmpfiles not found (Debian package: systemd)")
        return
    root = os.path.join(tmp, "root")
    os.makedirs(os.path.join(root, "etc"))
    rc, out = run([sysusers, "--root=" + root, sysusers_file])
    if rc != 0:
        fail("systemd-sysusers --root: rc=%d\n%s" % (rc, out))
        return
    gid = None
    with open(os.path.join(root, "etc", "group"), encoding="utf-8") as f:
        for line in f:
            fields = line.split(":")
            if fields[0] == group:
                gid = int(fields[2])
    if gid is None:
        fail("systemd-sysusers did not create the group %s" % group)
        return
    ok("sysusers.conf creates %s (gid %d in a scratch root)" % (group, gid))
    if os.geteuid() != 0:
        print("note: not root, tmpfiles.d ownership not checked (chown needs root)")
        return
    rc, out = run([tmpfiles, "--create", "--root=" + root, tmpfiles_file])
    st = os.stat(os.path.join(root, "etc", "payrelay")) if rc == 0 else None
    if st is None or (st.st_mode & 0o7777, st.st_uid, st.st_gid) != (0o750, 0, gid):
        fail("systemd-tmpfiles: rc=%d, /etc/payrelay %s\n%s"
             % (rc, st and (oct(st.st_mode & 0o7777), st.st_uid, st.st_gid), out))
    else:
        ok("tmpfiles.conf makes /etc/payrelay root:%s 0750" % group)


def check_install(meson, build_root, analyze, unit_installed, tmp):
    if not meson:
        fail("meson not found: cannot check `meson install`")
        return
    rc, out = run([meson, "introspect", "--installed", build_root])
    if rc != 0:
        fail("meson introspect --installed: rc=%d\n%s" % (rc, out))
        return
    installed = json.loads(out)
    built_unit = os.path.join(build_root, "systemd", UNIT)
    unit_dest = installed.get(built_unit)
    bin_dest = installed.get(os.path.join(build_root, "src", "payrelayd"))
    if not bin_dest:
        fail("payrelayd is not installed: %r" % installed)
        return
    if not unit_installed:
        if unit_dest:
            fail("built without libsystemd, yet the unit is installed to " + unit_dest)
        else:
            ok("built without libsystemd: the unit is not installed (Type=notify needs it)")
        return
    if not unit_dest:
        fail("the unit is not installed: %r" % installed)
        return
    destdir = os.path.join(tmp, "destdir")
    # Not --no-rebuild: `meson test` builds only what the tests depend on,
    # and install needs every target.
    rc, out = run([meson, "install", "-C", build_root, "--quiet", "--destdir", destdir],
                  timeout=600)
    if rc != 0:
        fail("meson install --destdir: rc=%d\n%s" % (rc, out[-3000:]))
        return
    staged = destdir + unit_dest
    if not os.path.isfile(staged):
        fail("meson install did not write " + staged)
        return
    unit_dir = os.path.dirname(unit_dest)
    if not unit_dir.endswith("/lib/systemd/system"):
        fail("unit installed to %s, not a lib/systemd/system directory" % unit_dir)
    rc, out = run([analyze, "unit-paths", "--system"])
    paths = [os.path.normpath(p) for p in out.split()]
    if rc == 0 and os.path.normpath(unit_dir) not in paths:
        fail("%s is not among the directories systemd reads units from:\n%s" % (unit_dir, out))
    with open(staged, encoding="utf-8") as f:
        sec = parse_unit(f.read())
    exec_start = (one(sec, "Service", "ExecStart") or "").split()
    if not exec_start or exec_start[0] != bin_dest:
        fail("installed unit: ExecStart=%r, payrelayd is installed as %s" % (exec_start, bin_dest))
    elif not os.access(destdir + bin_dest, os.X_OK):
        fail("ExecStart %s is not installed (looked in %s)" % (bin_dest, destdir))
    else:
        ok("meson install: %s, ExecStart=%s" % (unit_dest, bin_dest))
    for name, sub in (("sysusers.d", "sysusers.d/payrelay.conf"),
                      ("tmpfiles.d", "tmpfiles.d/payrelay.conf")):
        hits = [d for d in installed.values() if d.endswith("/" + sub)]
        if not hits or not os.path.isfile(destdir + hits[0]):
            fail("%s file not installed (%r)" % (name, hits))
        else:
            ok("meson install: " + hits[0])
    doc = next((d for d in installed.values() if d.endswith("/doc/payrelay/systemd.md")), None)
    documentation = one(sec, "Unit", "Documentation") or ""
    if not doc or documentation != "file://" + doc:
        fail("Documentation=%s, systemd.md installed as %s" % (documentation, doc))
    elif not os.path.isfile(destdir + doc):
        fail("meson install did not write " + destdir + doc)
    else:
        ok("meson install: Documentation=%s is installed" % documentation)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--source-root", required=True)
    ap.add_argument("--build-root", required=True)
    ap.add_argument("--payrelayd", required=True)
    ap.add_argument("--meson", default="")
    ap.add_argument("--unit-installed", choices=("yes", "no"), required=True)
    args = ap.parse_args()

    analyze = find_tool("systemd-analyze")
    if not analyze:
        print("FAIL: systemd-analyze not found. It is in the Debian package `systemd` "
              "(scripts/deps.sh installs it); no booted systemd is needed.")
        return 1
    rc, out = run([analyze, "--version"])
    print("using %s: %s" % (analyze, out.splitlines()[0] if out else "?"))

    built_unit = os.path.join(args.build_root, "systemd", UNIT)
    with open(built_unit, encoding="utf-8") as f:
        unit_text = f.read()
    left = re.findall(r"@[A-Z_]+@", unit_text)
    if left:
        fail("placeholders not substituted in %s: %s" % (built_unit, " ".join(left)))
    sec = parse_unit(unit_text)
    exec_start = (one(sec, "Service", "ExecStart") or "").split()
    if not exec_start or os.path.basename(exec_start[0]) != "payrelayd":
        fail("ExecStart does not run payrelayd: %r" % exec_start)
        return 1
    sbindir = os.path.dirname(exec_start[0])
    sd_dir = os.path.join(args.source_root, "systemd")
    with open(os.path.join(sd_dir, "sysusers.conf"), encoding="utf-8") as f:
        sysusers_text = f.read()
    with open(os.path.join(sd_dir, "tmpfiles.conf"), encoding="utf-8") as f:
        tmpfiles_text = f.read()
    check_directives(sec, sbindir, sysusers_text, tmpfiles_text)

    # verify needs the executables to exist: point the unit at the build.
    built_bin = os.path.abspath(args.payrelayd)
    local_text = unit_text.replace(exec_start[0] + " ", built_bin + " ")
    tmp = tempfile.mkdtemp(prefix="payrelay-sd-")
    try:
        path = check_verify(analyze, local_text, tmp)
        check_security(analyze, path)
        check_snippets(os.path.join(sd_dir, "sysusers.conf"),
                       os.path.join(sd_dir, "tmpfiles.conf"), tmp,
                       one(sec, "Service", "Group") or "payrelay")
        check_install(args.meson or find_tool("meson"), args.build_root, analyze,
                      args.unit_installed == "yes", tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    if failures:
        print("\n%d problem(s)" % len(failures))
        return 1
    print("\nall systemd checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
