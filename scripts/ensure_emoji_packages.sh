#!/usr/bin/env bash
# Make sure the three Debian packages that emoji-lt is built from are installed:
#   fonts-noto-color-emoji (NotoColorEmoji.ttf), unicode-data (emoji-test.txt),
#   unicode-cldr-core (CLDR English annotations),
# plus libfribidi0, which Pillow's bundled raqm text layout loads at run time (emoji ZWJ sequences).
# Checks the files; installs what is missing with apt-get (as root, or through sudo -n), printing what
# it does (scripts/ensure_debian_files.sh). Exit status 0 when the files are present at the end, 1
# otherwise.
#   --check   only report, install nothing
set -u

CHECK=()
[ "${1:-}" = "--check" ] && CHECK=(--check)

exec "$(dirname "$0")/ensure_debian_files.sh" "${CHECK[@]}" "emoji-lt sources" \
  "see README 'emoji-lt' for the files and the PYCMLT_EMOJI_* variables that point to them" \
  fonts-noto-color-emoji=/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf \
  unicode-data=/usr/share/unicode/emoji/emoji-test.txt \
  unicode-cldr-core=/usr/share/unicode/cldr/common/annotations/en.xml \
  unicode-cldr-core=/usr/share/unicode/cldr/common/annotationsDerived/en.xml \
  libfribidi0=libfribidi.so.0
