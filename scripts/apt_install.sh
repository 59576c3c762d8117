#!/usr/bin/env bash
# Install Debian packages with apt-get, as root or through password-less sudo, printing what it does;
# runs `apt-get update` and tries again when the package lists are not current. Used by
# ensure_debian_files.sh (for ensure_emoji_packages.sh and ensure_hanzi_packages.sh). Exit status 0
# when apt-get succeeded.
#   scripts/apt_install.sh PACKAGE...
set -u
[ $# -gt 0 ] || { echo "usage: $0 PACKAGE..." >&2; exit 2; }

if ! command -v apt-get >/dev/null 2>&1; then
  echo "apt-get is not available: install $* (or equivalent files) by hand" >&2
  exit 1
fi
if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  SUDO=(sudo -n)
else
  echo "not root and no password-less sudo: run  sudo apt-get install -y $*" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
echo "+ ${SUDO[*]:-} apt-get install -y --no-install-recommends $*"
if ! "${SUDO[@]}" apt-get install -y --no-install-recommends "$@"; then
  echo "+ ${SUDO[*]:-} apt-get update  (package lists were not current)"
  "${SUDO[@]}" apt-get update -q || true
  echo "+ ${SUDO[*]:-} apt-get install -y --no-install-recommends $*"
  "${SUDO[@]}" apt-get install -y --no-install-recommends "$@" || {
    echo "apt-get could not install $*" >&2
    exit 1
  }
fi
