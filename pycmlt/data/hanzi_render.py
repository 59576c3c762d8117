"""Drawing Chinese characters from an outline font as coverage masks for hanzi-lt.

A glyph is drawn with Pillow at GLYPH_SIZE pixels (white on black, mode "L"), cropped to its inked
pixels, and rendered with the augmentation shared with emoji-lt (`emoji_render.render_glyph`:
scale, rotation, shift, random background, drawn in the contrasting ink). Only characters in the
font's cmap are drawn: another one raises KeyError instead of silently drawing the .notdef box.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pycmlt.data.emoji_render import RenderAugment, render_glyph
from pycmlt.data.hanzi_sources import font_coverage

GLYPH_SIZE = 128  # font size in pixels: the 4x canvas of a 32-pixel rendering


class HanziRenderer:
    def __init__(self, font_path: str | Path, name: str = ""):
        self.font_path = str(font_path)
        self.name = name or Path(font_path).stem
        try:  # the first face of a .ttc; single characters need no complex layout
            self.font = ImageFont.truetype(self.font_path, GLYPH_SIZE, index=0, layout_engine=ImageFont.Layout.BASIC)
        except OSError as e:
            raise OSError(f"cannot load the font {font_path} at size {GLYPH_SIZE}: {e}") from e
        self.coverage = font_coverage(self.font_path)

    def has(self, char: str) -> bool:
        return ord(char) in self.coverage

    def glyph(self, char: str) -> Image.Image:
        """Coverage mask ("L") of one character, cropped to its inked pixels."""
        if not self.has(char):
            raise KeyError(f"the font {self.name} ({self.font_path}) has no glyph for {char!r} (U+{ord(char):04X})")
        box = self.font.getbbox(char)
        im = Image.new("L", (max(box[2], 1) + 4, max(box[3], 1) + 4), 0)
        ImageDraw.Draw(im).text((0, 0), char, font=self.font, fill=255)
        bbox = im.getbbox()
        if bbox is None:
            raise RuntimeError(f"{char!r} (U+{ord(char):04X}) rendered as an empty image with the font {self.name} "
                               f"({self.font_path}) although its cmap lists it")
        return im.crop(bbox)

    def render(self, char: str, size: int, rng: np.random.Generator,
               aug: RenderAugment = RenderAugment()) -> np.ndarray:
        """uint8 [size, size, 3] augmented rendering of `char`."""
        return render_glyph(self.glyph(char), size, rng, aug)
