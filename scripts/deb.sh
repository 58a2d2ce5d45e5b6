#!/usr/bin/env bash
# Builds the Debian package from this tree (debian/), offline:
# dpkg-buildpackage -us -uc -b in a scratch copy, so that neither this
# checkout nor its parent directory gets build products. The build
# dependencies missing are installed first from Debian's packages (as root,
# or with sudo). The .deb (and its -dbgsym, .buildinfo, .changes) end up in
# dist/ (git-ignored), or in $PAYRELAY_DIST.
# Usage: scripts/deb.sh [--lintian]   (--lintian: then run lintian on the result,
#                                      failing on any warning or error)
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
dist=${PAYRELAY_DIST:-$top/dist}
run_lintian=no
[ "${1:-}" = "--lintian" ] && run_lintian=yes

# Root, and the network, only when something is missing: building needs
# neither.
updated=no
apt_get() {
  local as_root=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "deb: run as root (or install sudo) to install build dependencies" >&2; exit 1; }
    as_root=(sudo)
  fi
  if [ $updated = no ]; then
    DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get -o DPkg::Lock::Timeout=300 -qq update
    updated=yes
  fi
  DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get -o DPkg::Lock::Timeout=300 -y -qq \
    --no-install-recommends "$@" >/dev/null
}
apt_install() { apt_get install "$@"; }
if ! command -v dpkg-checkbuilddeps >/dev/null || ! command -v dh >/dev/null; then
  echo "deb: installing dpkg-dev debhelper" >&2
  apt_install dpkg-dev debhelper
fi
if ! dpkg-checkbuilddeps debian/control; then
  echo "deb: installing the build dependencies (apt-get build-dep)" >&2
  apt_get build-dep "$top"
fi
if [ $run_lintian = yes ] && ! command -v lintian >/dev/null; then
  echo "deb: installing lintian" >&2
  apt_install lintian
fi

version=$(dpkg-parsechangelog -l debian/changelog -S Version)
meson_version=$(sed -n "s/^ *version : '\([^']*\)',.*/\1/p" meson.build | head -n 1)
if [ "$version" != "$meson_version" ]; then
  echo "deb: debian/changelog says $version, meson.build $meson_version: add a changelog entry (dch -v $meson_version)" >&2
  exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
src=$tmp/payrelay-$version
mkdir "$src"
# The working tree as it is (uncommitted changes too), without what git
# ignores: build directories, dist/, .redis/.
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  git ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
    tar --null -T - -cf - | tar -xf - -C "$src"
else
  tar --exclude=./.git --exclude='./build*' --exclude=./dist --exclude=./.redis -cf - . | tar -xf - -C "$src"
fi

echo "== dpkg-buildpackage payrelay $version" >&2
(cd "$src" && dpkg-buildpackage -us -uc -b) >"$tmp/build.log" 2>&1 || {
  tail -n 60 "$tmp/build.log" >&2
  echo "deb: dpkg-buildpackage failed (last lines above)" >&2
  exit 1
}
mkdir -p "$dist"
# Only this version's files: an older .deb left in dist/ is not this build.
rm -f "$dist"/payrelay_* "$dist"/payrelay-dbgsym_*
find "$tmp" -maxdepth 1 -type f \( -name '*.deb' -o -name '*.ddeb' -o -name '*.buildinfo' -o -name '*.changes' \) \
  -exec cp {} "$dist"/ \;
deb=$(ls "$dist"/payrelay_"$version"_*.deb)
echo "deb: $deb" >&2

if [ $run_lintian = yes ]; then
  echo "== lintian" >&2
  # Overrides (debian/payrelay.lintian-overrides) each say why.
  lintian --fail-on error,warning --display-info --tag-display-limit 0 "$dist"/payrelay_"$version"_*.changes
fi
