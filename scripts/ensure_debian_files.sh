#!/usr/bin/env bash
# The check / install / verify loop behind ensure_emoji_packages.sh and ensure_hanzi_packages.sh.
# Each PACKAGE=FILE names a file a Debian package provides: an absolute path, or a shared library's
# name (no "/", e.g. libfribidi.so.0), looked up with `ldconfig -p` and under /usr/lib. A package may
# come with several files. Reports the packages with a missing file; installs them with
# scripts/apt_install.sh, printing what it does, and checks their files again. Exit status 0 when
# every file is present at the end, 1 otherwise, 2 on a usage error.
#   scripts/ensure_debian_files.sh [--check] LABEL HINT PACKAGE=FILE...
#   --check   only report, install nothing
#   LABEL     what the files are for; starts every report line ("emoji-lt sources")
#   HINT      printed when apt-get fails: where to read how to point to other files
set -u

CHECK_ONLY=0
[ "${1:-}" = "--check" ] && { CHECK_ONLY=1; shift; }
[ $# -ge 3 ] || { echo "usage: $0 [--check] LABEL HINT PACKAGE=FILE..." >&2; exit 2; }
LABEL=$1
HINT=$2
shift 2

PACKAGE_OF=()  # the pairs, in order
FILE_OF=()
for pair in "$@"; do
  case $pair in
    ?*=?*) PACKAGE_OF+=("${pair%%=*}"); FILE_OF+=("${pair#*=}") ;;
    *) echo "$0: not PACKAGE=FILE: $pair" >&2; exit 2 ;;
  esac
done

present() {  # FILE: a path, or a shared library's name
  case $1 in
    */*) [ -f "$1" ] ;;
    *) { ldconfig -p 2>/dev/null || /sbin/ldconfig -p 2>/dev/null; } | grep -qF "$1" && return 0
       ls /usr/lib/*/"$1" /usr/lib/"$1" >/dev/null 2>&1 ;;
  esac
}

listed() {  # NAME LIST...: is NAME among LIST?
  local name=$1 item
  shift
  for item in "$@"; do [ "$item" = "$name" ] && return 0; done
  return 1
}

packages=()
missing=()
for i in "${!PACKAGE_OF[@]}"; do
  pkg=${PACKAGE_OF[$i]}
  listed "$pkg" "${packages[@]}" || packages+=("$pkg")
  present "${FILE_OF[$i]}" || listed "$pkg" "${missing[@]}" || missing+=("$pkg")
done

if [ ${#missing[@]} -eq 0 ]; then
  joined=$(printf ', %s' "${packages[@]}")
  echo "$LABEL: ${joined#, } are installed"
  exit 0
fi

echo "$LABEL: missing Debian package(s): ${missing[*]}"
if [ $CHECK_ONLY -eq 1 ]; then
  echo "install them with: sudo apt-get install -y ${missing[*]}"
  exit 1
fi
"$(dirname "$0")/apt_install.sh" "${missing[@]}" || {
  echo "$HINT" >&2
  exit 1
}

for i in "${!PACKAGE_OF[@]}"; do
  pkg=${PACKAGE_OF[$i]} file=${FILE_OF[$i]}
  listed "$pkg" "${missing[@]}" || continue
  present "$file" && continue
  case $file in
    */*) echo "installed $pkg but $file is still missing" >&2 ;;
    *) echo "installed $pkg but $file is still not found" >&2 ;;
  esac
  exit 1
done
echo "$LABEL: installed ${missing[*]}"
