"""The *base* of an emoji: what its skin-tone, gender and hair variants have in common.

emoji-lt splits train/test by base, so that a test image is never a recoloured (skin tone) or
re-gendered copy of a training image. The base key of an emoji sequence is computed as follows:

1. drop U+FE0F (emoji presentation selector) and the skin-tone modifiers U+1F3FB..U+1F3FF;
2. split the sequence at ZERO WIDTH JOINER (U+200D) into components; when there is more than one
   component, drop the components that are a gender sign (U+2640 female, U+2642 male) or a hair
   style (U+1F9B0..U+1F9B3: red, curly, bald, white hair);
3. map gendered person characters to their gender-neutral form, in every component:
   man U+1F468 / woman U+1F469 -> person U+1F9D1; boy U+1F466 / girl U+1F467 -> child U+1F9D2;
   old man U+1F474 / old woman U+1F475 -> older person U+1F9D3; prince U+1F934 / princess U+1F478
   -> person with crown U+1FAC5; Santa U+1F385 / Mrs. Claus U+1F936 -> mx claus (person + U+1F384);
   pregnant man U+1FAC3 / pregnant woman U+1F930 -> pregnant person U+1FAC4;
   man dancing U+1F57A -> woman dancing U+1F483 (no neutral form exists);
4. single-character forms of multi-person sequences become those sequences: kiss U+1F48F ->
   person-heart-kiss-person, couple with heart U+1F491 -> person-heart-person, U+1F46B/1F46C/1F46D
   (two people holding hands) -> people holding hands, family U+1F46A -> person-person-child,
   handshake U+1F91D -> rightwards hand + leftwards hand (U+1FAF1 U+200D U+1FAF2), also inside
   other sequences (the mapping is applied until nothing changes).

The key is the remaining components joined with "+" as hex code points, e.g. "1F3C3" for every
"person/man/woman running" in every skin tone, "1F9D1-1F4BB" for every technologist.
"""
from __future__ import annotations

SKIN_TONES = frozenset(range(0x1F3FB, 0x1F400))
HAIR = frozenset(range(0x1F9B0, 0x1F9B4))
GENDER_SIGNS = frozenset({0x2640, 0x2642})
ZWJ = 0x200D
VS16 = 0xFE0F

PERSON, CHILD, OLDER = 0x1F9D1, 0x1F9D2, 0x1F9D3
NEUTRAL = {
    0x1F468: (PERSON,), 0x1F469: (PERSON,),
    0x1F466: (CHILD,), 0x1F467: (CHILD,),
    0x1F474: (OLDER,), 0x1F475: (OLDER,),
    0x1F934: (0x1FAC5,), 0x1F478: (0x1FAC5,),
    0x1F385: (PERSON, ZWJ, 0x1F384), 0x1F936: (PERSON, ZWJ, 0x1F384),
    0x1FAC3: (0x1FAC4,), 0x1F930: (0x1FAC4,),
    0x1F57A: (0x1F483,),
    0x1F48F: (PERSON, ZWJ, 0x2764, ZWJ, 0x1F48B, ZWJ, PERSON),
    0x1F491: (PERSON, ZWJ, 0x2764, ZWJ, PERSON),
    0x1F46B: (PERSON, ZWJ, 0x1F91D, ZWJ, PERSON), 0x1F46C: (PERSON, ZWJ, 0x1F91D, ZWJ, PERSON),
    0x1F46D: (PERSON, ZWJ, 0x1F91D, ZWJ, PERSON),
    0x1F46A: (PERSON, ZWJ, PERSON, ZWJ, CHILD),
    0x1F91D: (0x1FAF1, ZWJ, 0x1FAF2),
}


def _neutral(c: int) -> tuple[int, ...]:
    """NEUTRAL applied until nothing changes (the handshake inside "people holding hands")."""
    if c not in NEUTRAL:
        return (c,)
    return tuple(x for v in NEUTRAL[c] for x in _neutral(v))


def _components(cps) -> list[tuple[int, ...]]:
    parts, cur = [], []
    for c in cps:
        if c == ZWJ:
            parts.append(tuple(cur))
            cur = []
        else:
            cur.append(c)
    parts.append(tuple(cur))
    return parts


def base_key(codepoints) -> str:
    cps = [c for c in codepoints if c != VS16 and c not in SKIN_TONES]
    parts = _components(cps)
    if len(parts) > 1:
        parts = [p for p in parts if not (len(p) == 1 and (p[0] in GENDER_SIGNS or p[0] in HAIR))]
    mapped: list[int] = []
    for k, p in enumerate(parts):
        if k:
            mapped.append(ZWJ)
        for c in p:
            mapped.extend(_neutral(c))
    return "+".join("-".join(f"{c:X}" for c in p) for p in _components(mapped))
