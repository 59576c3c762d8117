#!/usr/bin/env bash
# Make sure the five Debian packages that hanzi-lt is built from are installed:
#   unicode-data (the Unihan files, CJKRadicals.txt, UnicodeData.txt) and the fonts
#   fonts-arphic-uming, fonts-arphic-ukai, fonts-wqy-zenhei, fonts-hanazono.
# Checks the files; installs what is missing with apt-get (scripts/ensure_debian_files.sh, through
# scripts/apt_install.sh), printing what it does. Exit status 0 when the files are present at the end,
# 1 otherwise.
#   --check   only report, install nothing
set -u

CHECK=()
[ "${1:-}" = "--check" ] && CHECK=(--check)

exec "$(dirname "$0")/ensure_debian_files.sh" "${CHECK[@]}" "hanzi-lt sources" \
  "see README 'hanzi-lt' for the files and the options that point to them" \
  unicode-data=/usr/share/unicode/Unihan_IRGSources.txt.bz2 \
  fonts-arphic-uming=/usr/share/fonts/truetype/arphic/uming.ttc \
  fonts-arphic-ukai=/usr/share/fonts/truetype/arphic/ukai.ttc \
  fonts-wqy-zenhei=/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc \
  fonts-hanazono=/usr/share/fonts/truetype/hanazono/HanaMinA.ttf
