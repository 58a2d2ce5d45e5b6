#!/usr/bin/env bash
# Installs, from Debian 12's packages, what payrelay needs to build, run and
# test. Does nothing when everything is there already. Usage: deps.sh [extra-package ...]
set -euo pipefail

packages=(
  gcc pkg-config meson ninja-build
  libevent-dev libhiredis-dev libjansson-dev libcurl4-openssl-dev libssl-dev
  libinih-dev libsystemd-dev check
  redis-server redis-sentinel redis-tools lua5.1 python3 openssl curl clang-format systemd
  nginx libnginx-mod-stream
  "$@"
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}" >&2
as_root=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "deps: run as root (or install sudo) to install: ${missing[*]}" >&2; exit 1; }
  as_root=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq
# policy-rc.d keeps the packages' own services (redis, nginx) from starting:
# payrelay starts the servers it needs itself.
"${as_root[@]}" sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d'
trap '"${as_root[@]}" rm -f /usr/sbin/policy-rc.d' EXIT
"${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
