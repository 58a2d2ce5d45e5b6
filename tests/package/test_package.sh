#!/usr/bin/env bash
# package: the Debian package, built, inspected, installed, checked as
# installed, reinstalled, removed and purged on this machine.
#
# 1. scripts/deb.sh --lintian builds it (lintian clean: no warning, no error).
# 2. dpkg-deb -c / -I: the files, their modes, the conffile, the version
#    (meson.build's), the maintainer scripts; no demo key inside.
# 3. apt-get install ./payrelay_*.deb, then: the system user and group
#    payrelay; /etc/payrelay root:payrelay 0750, its files 0640 and the
#    generated secrets; `payrelayd --check-config` on the installed file, as
#    root and as the service user, with no warning; another user cannot read
#    it; payrelayctl reads it (as the group); `systemd-analyze verify` on the
#    installed unit; the man pages; the unit is not enabled.
# 4. A reinstall keeps the secrets.
# 5. apt-get remove keeps the configuration; apt-get purge leaves no file of
#    the package, no /etc/payrelay, no systemd state; the user stays (as
#    Debian leaves system users).
#
# It needs root and installs system-wide: CI runs it on a throw-away machine.
# It refuses to run where payrelay is installed already.
set -uo pipefail

root=${PAYRELAY_SOURCE_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
started=$(date +%s)
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
ok() { echo "ok: $*"; }
# `mark`, some checks, then `ok_since MSG`: MSG only if none of them failed.
mark() { marked=$failures; }
ok_since() { [ "$failures" -eq "$marked" ] && ok "$@"; }
marked=0
apt() {
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 -y -q "$@"
}
pkg_state() { dpkg-query -W -f='${db:Status-Abbrev}' payrelay 2>/dev/null | tr -d ' '; }
mode_of() { stat -c '%a %U:%G' "$1" 2>/dev/null || echo missing; }
# Container images often tell dpkg not to unpack man pages and docs
# (path-exclude in /etc/dpkg/dpkg.cfg.d): such a path is not looked for.
excludes=$(cat /etc/dpkg/dpkg.cfg /etc/dpkg/dpkg.cfg.d/* 2>/dev/null | sed -n 's/^path-exclude[= ]//p')
excluded() {
  local - pat
  set -f  # the patterns are globs for [[ ]], not for this loop
  for pat in $excludes; do
    # shellcheck disable=SC2053 # the glob is the point
    [[ $1 == $pat ]] && return 0
  done
  return 1
}

if [ "$(id -u)" -ne 0 ]; then
  echo "package: needs root (it installs the package on this machine; CI runs as root)"
  exit 77
fi
case "$(pkg_state)" in
  "" | un | pn) ;;
  *) echo "package: payrelay is installed here already ($(pkg_state)): not touching it"; exit 1 ;;
esac

tmp=$(mktemp -d)
installed=no
override=no
cleanup() {
  [ $override = yes ] && dpkg-statoverride --remove /etc/payrelay/payrelayd.conf >/dev/null 2>&1
  if [ $installed = yes ] && [ -n "$(pkg_state)" ] && [ "$(pkg_state)" != un ]; then
    apt purge payrelay >/dev/null 2>&1 || dpkg --purge payrelay >/dev/null 2>&1
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

# --- 1. build ---------------------------------------------------------------
version=$(sed -n "s/^ *version : '\([^']*\)',.*/\1/p" "$root/meson.build" | head -n 1)
t0=$(date +%s)
if ! PAYRELAY_DIST="$tmp/dist" bash "$root/scripts/deb.sh" --lintian >"$tmp/deb.log" 2>&1; then
  cat "$tmp/deb.log"
  fail "scripts/deb.sh --lintian failed"
  exit 1
fi
grep -E '^[EWI]: ' "$tmp/deb.log" | sed 's/^/lintian: /'
ok "built and lintian clean in $(($(date +%s) - t0)) s"
deb=$(find "$tmp/dist" -name "payrelay_${version}_*.deb" | head -n 1)
[ -n "$deb" ] || { fail "no payrelay_${version}_*.deb in dist"; exit 1; }

# --- 2. inspect -------------------------------------------------------------
dpkg-deb -c "$deb" >"$tmp/contents"
dpkg-deb -I "$deb" >"$tmp/info"
listed() { awk '{ print $1, $2, $NF }' "$tmp/contents" | grep -qxF -- "$1"; }
for want in \
  "-rwxr-xr-x root/root ./usr/sbin/payrelayd" \
  "-rwxr-xr-x root/root ./usr/bin/payrelayctl" \
  "-rw-r--r-- root/root ./lib/systemd/system/payrelayd.service" \
  "-rw-r--r-- root/root ./usr/lib/sysusers.d/payrelay.conf" \
  "-rw-r--r-- root/root ./usr/lib/tmpfiles.d/payrelay.conf" \
  "drwxr-x--- root/root ./etc/payrelay/" \
  "-rw-r----- root/root ./etc/payrelay/payrelayd.conf" \
  "-rw-r--r-- root/root ./usr/share/man/man8/payrelayd.8.gz" \
  "-rw-r--r-- root/root ./usr/share/man/man1/payrelayctl.1.gz" \
  "-rw-r--r-- root/root ./usr/share/man/man5/payrelayd.conf.5.gz" \
  "-rw-r--r-- root/root ./usr/share/doc/payrelay/systemd.md" \
  "-rw-r--r-- root/root ./usr/share/doc/payrelay/operations.md.gz" \
  "-rw-r--r-- root/root ./usr/share/doc/payrelay/README.Debian" \
  "-rw-r--r-- root/root ./usr/share/doc/payrelay/copyright"; do
  listed "$want" || fail "dpkg-deb -c: no '$want'"
done
stray=$(awk '{ print $NF }' "$tmp/contents" | grep -vE '^\./(etc/payrelay/|lib/systemd/system/|usr/(bin|sbin|lib/(sysusers|tmpfiles)\.d|share/(doc|man)/)|(etc|lib|lib/systemd|usr|usr/lib|usr/share)/)|^\./$')
if [ -z "$stray" ]; then
  ok "dpkg-deb -c: $(grep -vc '^d' "$tmp/contents") files, each where it belongs"
else
  fail "dpkg-deb -c: unexpected paths: $stray"
fi
mark
field() { dpkg-deb -f "$deb" "$1"; }
[ "$(field Package)" = payrelay ] || fail "Package: $(field Package)"
[ "$(field Version)" = "$version" ] || fail "Version $(field Version), meson.build says $version"
field Depends | grep -q 'libsystemd0' || fail "Depends lacks libsystemd0: $(field Depends)"
field Depends | grep -q 'systemd-sysusers' || fail "Depends lacks systemd-sysusers (dh_installsysusers): $(field Depends)"
[ "$(dpkg-deb -I "$deb" conffiles)" = "/etc/payrelay/payrelayd.conf" ] \
  || fail "conffiles: $(dpkg-deb -I "$deb" conffiles)"
grep -qE '^ +[0-9]+ bytes, +[0-9]+ lines +\* +postinst' "$tmp/info" || fail "no executable postinst: $(cat "$tmp/info")"
grep -qE '^ +[0-9]+ bytes, +[0-9]+ lines +\* +postrm' "$tmp/info" || fail "no executable postrm"
dpkg-deb -I "$deb" postinst | grep -q 'systemd-sysusers.*payrelay.conf' || fail "postinst does not run systemd-sysusers"
ok_since "dpkg-deb -I: payrelay $version, conffile /etc/payrelay/payrelayd.conf, postinst runs systemd-sysusers"
# The demo configuration's key is public (../shared/vectors): never shipped.
demo_key=$(awk '/^\[/ { ch = /^\[channel:/ } ch && $1 == "key" && $2 == "=" { print $3; exit }' "$root/conf/payrelayd.conf")
[ ${#demo_key} -ge 16 ] || fail "cannot find the demo channel key in conf/payrelayd.conf ('$demo_key')"
dpkg-deb -x "$deb" "$tmp/x"
if [ -n "$demo_key" ] && grep -rqF "$demo_key" "$tmp/x"; then
  fail "the package holds conf/payrelayd.conf's demo key"
else
  ok "no demo key in the package"
fi

# --- 3. install and check -----------------------------------------------------
installed=yes
t0=$(date +%s)
mark
if ! apt install --no-install-recommends "$deb" >"$tmp/install.log" 2>&1; then
  cat "$tmp/install.log"
  fail "apt-get install $deb"
  exit 1
fi
[ "$(pkg_state)" = ii ] || fail "dpkg state after install: $(pkg_state)"
ok_since "apt-get install ./$(basename "$deb") in $(($(date +%s) - t0)) s"

mark
pw=$(getent passwd payrelay)
if [ -z "$pw" ]; then
  fail "no user payrelay"
else
  IFS=: read -r _ _ uid gid _ home shell <<<"$pw"
  [ "$uid" -lt 1000 ] || fail "payrelay is not a system user: uid $uid"
  [ "$(getent group payrelay | cut -d: -f3)" = "$gid" ] || fail "payrelay's group is not payrelay"
  case "$shell" in */nologin | */false) ;; *) fail "payrelay's shell is $shell" ;; esac
  ok_since "system user payrelay: uid $uid, group payrelay, shell $shell, home $home"
fi

mark
for f in "/etc/payrelay 750 root:payrelay" "/etc/payrelay/payrelayd.conf 640 root:payrelay" \
  "/etc/payrelay/admin.token 640 root:payrelay" "/etc/payrelay/example.key 640 root:payrelay" \
  "/usr/sbin/payrelayd 755 root:root" "/usr/bin/payrelayctl 755 root:root" \
  "/lib/systemd/system/payrelayd.service 644 root:root"; do
  read -r path mode owner <<<"$f"
  [ "$(mode_of "$path")" = "$mode $owner" ] || fail "$path is $(mode_of "$path"), want $mode $owner"
done
for s in admin.token example.key; do
  grep -qxE '[0-9a-f]{64}' "/etc/payrelay/$s" || fail "/etc/payrelay/$s is not 32 random bytes in hex"
done
[ "$(cat /etc/payrelay/admin.token)" != "$(cat /etc/payrelay/example.key)" ] || fail "admin.token = example.key"
ok_since "modes: /etc/payrelay root:payrelay 0750, its files root:payrelay 0640, secrets generated"

[ "$(payrelayd --version)" = "payrelayd $version" ] || fail "payrelayd --version: $(payrelayd --version)"
[ "$(payrelayctl --version)" = "payrelayctl $version" ] || fail "payrelayctl --version: $(payrelayctl --version)"

conf=/etc/payrelay/payrelayd.conf
check_config() {  # check_config LABEL [runuser -u USER --]
  local label=$1; shift
  local out err rc
  out=$("$@" payrelayd -c "$conf" --check-config 2>"$tmp/err"); rc=$?
  err=$(cat "$tmp/err")
  if [ $rc -ne 0 ] || [ "$out" != "$conf: ok" ] || [ -n "$err" ]; then
    fail "--check-config as $label: rc=$rc stdout=$out stderr=$err"
  else
    ok "payrelayd --check-config as $label: '$out', no warning"
  fi
}
check_config root
check_config "the service user" runuser -u payrelay --
if runuser -u nobody -- cat "$conf" >/dev/null 2>&1 || runuser -u nobody -- cat /etc/payrelay/admin.token >/dev/null 2>&1; then
  fail "the user nobody can read /etc/payrelay"
else
  ok "the user nobody cannot read the configuration or the token"
fi
# payrelayctl as a member of the group: it reads the file and the token, and
# finds no daemon (the unit is not started): exit 3, not 4 (config unreadable).
if (exec 3<>/dev/tcp/127.0.0.1/8788) 2>/dev/null; then
  runuser -u payrelay -- payrelayctl --timeout 2 status >/dev/null 2>&1
  rc=$?
  [ $rc -ne 4 ] || fail "payrelayctl as group payrelay: config unreadable (exit 4)"
  ok "payrelayctl reads the installed config as group payrelay (port 8788 is busy here: exit $rc)"
else
  out=$(runuser -u payrelay -- payrelayctl --timeout 2 status 2>&1)
  rc=$?
  if [ $rc -eq 3 ]; then
    ok "payrelayctl status as group payrelay: reads the config and token, no daemon yet (exit 3)"
  else
    fail "payrelayctl status as group payrelay: exit $rc, want 3: $out"
  fi
fi

unit=/lib/systemd/system/payrelayd.service
man_opt=--man=no
pages=yes
if excluded /usr/share/man/man8/payrelayd.8.gz; then
  echo "note: dpkg does not unpack man pages here (path-exclude): not looking for them"
  pages=no
fi
[ $pages = yes ] && command -v man >/dev/null && man_opt=--man=yes
out=$(SYSTEMD_LOG_COLOR=0 LC_ALL=C.UTF-8 systemd-analyze verify "$man_opt" --recursive-errors=no "$unit" 2>&1)
rc=$?
ours=$(grep payrelayd <<<"$out")
if [ $rc -ne 0 ] || [ -n "$ours" ]; then
  fail "systemd-analyze verify $unit: rc=$rc: $out"
else
  ok "systemd-analyze verify $man_opt $unit: clean"
fi
grep -qx 'ExecStart=/usr/sbin/payrelayd -c /etc/payrelay/payrelayd.conf' "$unit" || fail "ExecStart of $unit: $(grep ExecStart= "$unit")"
grep -qx 'User=payrelay' "$unit" || fail "$unit does not run as payrelay"
doc=$(sed -n 's|^Documentation=file://||p' "$unit")
[ -f "$doc" ] || excluded "$doc" || fail "Documentation=file://$doc is not installed"
if [ $pages = yes ] && command -v man >/dev/null; then
  mark
  for p in 8/payrelayd 5/payrelayd.conf 1/payrelayctl; do
    man -w "${p%%/*}" "${p#*/}" >/dev/null 2>&1 || fail "man ${p%%/*} ${p#*/}: no page"
  done
  ok_since "man payrelayd, payrelayd.conf, payrelayctl: installed"
fi
if ls /etc/systemd/system/*.wants/payrelayd.service >/dev/null 2>&1; then
  fail "payrelayd.service is enabled on installation"
else
  ok "payrelayd.service is installed, not enabled (README.Debian)"
fi
missing=$(dpkg -L payrelay | while read -r f; do [ -e "$f" ] || excluded "$f" || echo "$f"; done)
[ -z "$missing" ] || fail "dpkg -L lists files that are not there: $missing"

# --- 4. reinstall: the secrets stay -------------------------------------------
reinstall() {
  apt install --reinstall --no-install-recommends "$deb" >"$tmp/reinstall.log" 2>&1 ||
    { cat "$tmp/reinstall.log"; fail "apt-get install --reinstall"; }
}
mark
sums=$(sha256sum /etc/payrelay/admin.token /etc/payrelay/example.key)
# As dpkg leaves a conffile it replaces on an upgrade: the postinst must give
# it back to the group.
chown root:root "$conf"
reinstall
[ "$(sha256sum /etc/payrelay/admin.token /etc/payrelay/example.key)" = "$sums" ] \
  || fail "a reinstall replaced the generated secrets"
[ "$(mode_of $conf)" = "640 root:payrelay" ] || fail "after a reinstall $conf is $(mode_of $conf)"
ok_since "reinstall: secrets kept, $conf root:payrelay 0640 again"
# The admin's dpkg-statoverride wins over the postinst.
override=yes
dpkg-statoverride --update --add root payrelay 0600 "$conf"
reinstall
if [ "$(mode_of $conf)" = "600 root:payrelay" ]; then
  ok "reinstall: a dpkg-statoverride of $conf (0600) is kept"
else
  fail "a dpkg-statoverride 0600 of $conf became $(mode_of $conf)"
fi
dpkg-statoverride --remove "$conf" && override=no

# --- 5. remove, purge ---------------------------------------------------------
mark
apt remove payrelay >"$tmp/remove.log" 2>&1 || { cat "$tmp/remove.log"; fail "apt-get remove"; }
[ "$(pkg_state)" = rc ] || fail "dpkg state after remove: $(pkg_state), want rc"
if [ -e /usr/sbin/payrelayd ] || [ -e "$unit" ]; then fail "remove left the programs or the unit"; fi
if [ ! -f "$conf" ] || [ ! -f /etc/payrelay/admin.token ]; then fail "remove deleted the configuration"; fi
ok_since "apt-get remove: programs gone, configuration kept"

mark
apt purge payrelay >"$tmp/purge.log" 2>&1 || { cat "$tmp/purge.log"; fail "apt-get purge"; }
case "$(pkg_state)" in "" | un | pn) ;; *) fail "dpkg state after purge: $(pkg_state)" ;; esac
left=$(awk '$1 !~ /^d/ { sub(/^\./, "", $NF); print $NF }' "$tmp/contents" | while read -r f; do [ -e "$f" ] && echo "$f"; done)
[ -z "$left" ] || fail "purge left: $left"
[ ! -e /etc/payrelay ] || fail "purge left /etc/payrelay: $(ls -la /etc/payrelay)"
state=$(find /var/lib/systemd/deb-systemd-helper-enabled /var/lib/systemd/deb-systemd-helper-masked \
  -name '*payrelayd*' 2>/dev/null)
[ -z "$state" ] || fail "purge left systemd state: $state"
getent passwd payrelay >/dev/null || fail "purge removed the user payrelay (Debian leaves system users)"
ok_since "apt-get purge: no file of the package, no /etc/payrelay, no systemd state; user payrelay kept"
installed=no

echo "package test took $(($(date +%s) - started)) s"
if [ $failures -ne 0 ]; then
  echo "$failures failure(s)"
  exit 1
fi
