"""Rendering emoji with Pillow from the Noto Color Emoji font, with augmentation.

NotoColorEmoji.ttf is a CBDT bitmap font with a single strike: it is loaded at size 109 and drawn
with `embedded_color=True`, giving a colour glyph of about 136 x 128 pixels. A rendering of an
emoji at resolution S:
1. the glyph is cropped to its visible (alpha > 0) box;
2. scaled so that its longer side is s * F, s ~ U(scale), for an F x F canvas
   (F = clamp(4 S, S, 256): drawn at up to 4x and then downsampled, for clean anti-aliasing);
3. rotated by theta ~ U(-max_rotation, +max_rotation) degrees (steps 2-3 bilinear, premultiplied alpha);
4. placed with its centre at the canvas centre shifted by (dx, dy) * F, dx, dy ~ U(-max_shift, max_shift),
   over a solid background colour drawn uniformly from RGB (background="random") or white;
5. the canvas is reduced to S x S (box filter when F is a multiple of S, else Lanczos).
All draws come from the numpy Generator passed in, so a rendering is a pure function of
(glyph, S, generator state). `render_glyph` is shared with hanzi-lt, whose glyphs are coverage masks
(mode "L") drawn in the ink (black or white) that contrasts more with the drawn background.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont, features

FONT_SIZE = 109  # the size of the bitmap strike in NotoColorEmoji.ttf


@dataclass(frozen=True)
class RenderAugment:
    scale: tuple[float, float] = (0.6, 0.95)
    max_shift: float = 0.12
    max_rotation: float = 15.0
    background: str = "random"  # "random" or "white"

    def __post_init__(self):
        lo, hi = self.scale
        if not 0 < lo <= hi <= 1.5:
            raise ValueError(f"scale must satisfy 0 < low <= high <= 1.5, got {self.scale}")
        if not 0 <= self.max_shift <= 0.5:
            raise ValueError(f"max_shift must be in [0, 0.5], got {self.max_shift}")
        if not 0 <= self.max_rotation <= 180:
            raise ValueError(f"max_rotation must be in [0, 180], got {self.max_rotation}")
        if self.background not in ("random", "white"):
            raise ValueError(f"background must be 'random' or 'white', got {self.background!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["scale"] = list(self.scale)
        return d


class EmojiRenderer:
    def __init__(self, font_path):
        try:
            self.font = ImageFont.truetype(str(font_path), FONT_SIZE)
        except OSError as e:
            raise OSError(f"cannot load the emoji font {font_path} at size {FONT_SIZE}: {e}") from e
        self.font_path = str(font_path)
        self.raqm = self.font.layout_engine == ImageFont.Layout.RAQM
        if not self.raqm:  # the basic layout cannot join ZWJ sequences (families, professions, flags ...)
            raise RuntimeError(
                "emoji-lt needs Pillow's raqm text layout to render emoji sequences, and it is unavailable here "
                f"(raqm: {features.check('raqm')}, fribidi: {features.check('fribidi')}). Pillow's wheels bundle "
                "libraqm but load the FriBiDi library from the system: sudo apt-get install -y libfribidi0")
        self._advance = self.font.getlength("\U0001F600")  # one glyph's advance width

    def glyph(self, text: str) -> Image.Image:
        """RGBA image of one emoji, cropped to its visible pixels."""
        if self.font.getlength(text) > 1.5 * self._advance:
            raise RuntimeError(f"the emoji sequence {text!r} did not render as one glyph with {self.font_path}")
        box = self.font.getbbox(text)
        im = Image.new("RGBA", (box[2] + 4, box[3] + 4), (0, 0, 0, 0))
        ImageDraw.Draw(im).text((0, 0), text, font=self.font, embedded_color=True)
        bbox = im.getchannel("A").getbbox()
        if bbox is None:
            raise RuntimeError(f"the emoji {text!r} rendered as an empty image with {self.font_path}")
        return im.crop(bbox)

    @staticmethod
    def canvas_size(size: int) -> int:
        return canvas_size(size)

    def render(self, glyph: Image.Image, size: int, rng: np.random.Generator,
               aug: RenderAugment = RenderAugment()) -> np.ndarray:
        """uint8 [size, size, 3] augmented rendering of `glyph` (see the module doc)."""
        return render_glyph(glyph, size, rng, aug)


def canvas_size(size: int) -> int:
    """The side of the canvas a rendering at `size` is drawn on (4x, at most 256, at least `size`)."""
    return max(size, min(4 * size, 256))


def contrasting_ink(background: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black on a light background, white on a dark one (Rec. 601 luma against mid-grey)."""
    r, g, b = background
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b >= 127.5 else (255, 255, 255)


def render_glyph(glyph: Image.Image, size: int, rng: np.random.Generator,
                 aug: RenderAugment = RenderAugment()) -> np.ndarray:
    """uint8 [size, size, 3] augmented rendering of `glyph` (see the module doc): an RGBA colour
    glyph, or an "L" coverage mask drawn in the ink that contrasts with the background."""
    f = canvas_size(size)
    s = rng.uniform(*aug.scale)
    theta = rng.uniform(-aug.max_rotation, aug.max_rotation)
    dx, dy = rng.uniform(-aug.max_shift, aug.max_shift, size=2)
    bg = tuple(int(v) for v in rng.integers(0, 256, size=3)) if aug.background == "random" else (255, 255, 255)
    w, h = glyph.size
    factor = s * f / max(w, h)
    new_size = (max(1, round(w * factor)), max(1, round(h * factor)))
    if glyph.mode == "L":  # a coverage mask: transform it, then paint the ink through it
        g = glyph.resize(new_size, Image.Resampling.BILINEAR)
        if theta != 0.0:
            g = g.rotate(theta, resample=Image.Resampling.BILINEAR, expand=True)
        source = contrasting_ink(bg)
    else:  # premultiplied alpha while resampling, so transparent (black) pixels do not darken the edges
        g = glyph.convert("RGBa").resize(new_size, Image.Resampling.BILINEAR)
        if theta != 0.0:
            g = g.rotate(theta, resample=Image.Resampling.BILINEAR, expand=True)
        g = source = g.convert("RGBA")
    canvas = Image.new("RGB", (f, f), bg)
    x = round((f - g.width) / 2 + dx * f)
    y = round((f - g.height) / 2 + dy * f)
    canvas.paste(source, (x, y, x + g.width, y + g.height), g)
    if f != size:
        canvas = canvas.reduce(f // size) if f % size == 0 else canvas.resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(canvas, dtype=np.uint8)
