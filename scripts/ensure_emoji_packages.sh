#!/usr/bin/env bash
# Make sure the three Debian packages that emoji-lt is built from are installed:
#   fonts-noto-color-emoji (NotoColorEmoji.ttf), unicode-data (emoji-test.txt),
#   unicode-cldr-core (CLDR English annotations),
# plus libfribidi0, which Pillow's bundled raqm text layout loads at run time (emoji ZWJ sequences).
# Checks the files; installs what is missing with apt-get (as root, or through sudo -n), printing what
# it does. Exit status 0 when the files are present at the end, 1 otherwise.
#   --check   only report, install nothing
set -u

CHECK_ONLY=0
[ "${1:-}" = "--check" ] && CHECK_ONLY=1

declare -A FILE_OF=(
  [fonts-noto-color-emoji]=/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf
  [unicode-data]=/usr/share/unicode/emoji/emoji-test.txt
  [unicode-cldr-core]=/usr/share/unicode/cldr/common/annotations/en.xml
)

missing=()
for pkg in fonts-noto-color-emoji unicode-data unicode-cldr-core; do
  [ -f "${FILE_OF[$pkg]}" ] || missing+=("$pkg")
done
if [ -f "${FILE_OF[unicode-cldr-core]}" ] && [ ! -f /usr/share/unicode/cldr/common/annotationsDerived/en.xml ]; then
  missing+=(unicode-cldr-core)
fi
have_fribidi() {
  { ldconfig -p 2>/dev/null || /sbin/ldconfig -p 2>/dev/null; } | grep -q 'libfribidi\.so\.0' && return 0
  ls /usr/lib/*/libfribidi.so.0 /usr/lib/libfribidi.so.0 >/dev/null 2>&1
}
have_fribidi || missing+=(libfribidi0)

if [ ${#missing[@]} -eq 0 ]; then
  echo "emoji-lt sources: fonts-noto-color-emoji, unicode-data, unicode-cldr-core, libfribidi0 are installed"
  exit 0
fi

echo "emoji-lt sources: missing Debian package(s): ${missing[*]}"
if [ $CHECK_ONLY -eq 1 ]; then
  echo "install them with: sudo apt-get install -y ${missing[*]}"
  exit 1
fi
"$(dirname "$0")/apt_install.sh" "${missing[@]}" || {
  echo "see README 'emoji-lt' for the files and the PYCMLT_EMOJI_* variables that point to them" >&2
  exit 1
}

for pkg in "${missing[@]}"; do
  if [ "$pkg" = libfribidi0 ]; then
    have_fribidi || { echo "installed libfribidi0 but libfribidi.so.0 is still not found" >&2; exit 1; }
  elif [ ! -f "${FILE_OF[$pkg]}" ]; then
    echo "installed $pkg but ${FILE_OF[$pkg]} is still missing" >&2
    exit 1
  fi
done
echo "emoji-lt sources: installed ${missing[*]}"
