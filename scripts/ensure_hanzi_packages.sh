#!/usr/bin/env bash
# Make sure the five Debian packages that hanzi-lt is built from are installed:
#   unicode-data (the Unihan files, CJKRadicals.txt, UnicodeData.txt) and the fonts
#   fonts-arphic-uming, fonts-arphic-ukai, fonts-wqy-zenhei, fonts-hanazono.
# Checks the files; installs what is missing with apt-get (scripts/apt_install.sh), printing what it
# does. Exit status 0 when the files are present at the end, 1 otherwise.
#   --check   only report, install nothing
set -u

CHECK_ONLY=0
[ "${1:-}" = "--check" ] && CHECK_ONLY=1

PACKAGES=(unicode-data fonts-arphic-uming fonts-arphic-ukai fonts-wqy-zenhei fonts-hanazono)
declare -A FILE_OF=(
  [unicode-data]=/usr/share/unicode/Unihan_IRGSources.txt.bz2
  [fonts-arphic-uming]=/usr/share/fonts/truetype/arphic/uming.ttc
  [fonts-arphic-ukai]=/usr/share/fonts/truetype/arphic/ukai.ttc
  [fonts-wqy-zenhei]=/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc
  [fonts-hanazono]=/usr/share/fonts/truetype/hanazono/HanaMinA.ttf
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  [ -f "${FILE_OF[$pkg]}" ] || missing+=("$pkg")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "hanzi-lt sources: ${PACKAGES[*]} are installed"
  exit 0
fi

echo "hanzi-lt sources: missing Debian package(s): ${missing[*]}"
if [ $CHECK_ONLY -eq 1 ]; then
  echo "install them with: sudo apt-get install -y ${missing[*]}"
  exit 1
fi
"$(dirname "$0")/apt_install.sh" "${missing[@]}" || {
  echo "see README 'hanzi-lt' for the files and the options that point to them" >&2
  exit 1
}
for pkg in "${missing[@]}"; do
  if [ ! -f "${FILE_OF[$pkg]}" ]; then
    echo "installed $pkg but ${FILE_OF[$pkg]} is still missing" >&2
    exit 1
  fi
done
echo "hanzi-lt sources: installed ${missing[*]}"
