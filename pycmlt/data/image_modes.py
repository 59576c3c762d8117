"""Turning an image of any Pillow mode into 8-bit RGB without losing the picture.

Pillow's `convert("RGB")` drops the alpha channel (a black drawing on a transparent background
becomes solid black) and clips high-bit-depth values at 255 (a 16-bit grey ramp becomes nearly
white). `to_rgb` instead:

  * composites every image with transparency -- an alpha channel (RGBA, LA, PA, RGBa) or a
    `transparency` entry (palette, L or RGB with a transparent colour) -- over `background`;
  * scales 16-bit greys (I;16, I;16B, I;16L, I;16N) by 255/65535;
  * scales 32-bit integers (I) by 255/65535 when every value is within 0..65535 (how 16-bit PNG
    and TIFF files decode), else maps the image's own min..max onto 0..255;
  * scales 32-bit floats (F) by 255 when every value is within 0..1, else maps the image's own
    min..max onto 0..255 (NaN counts as 0);
  * converts everything else (1, L, P, RGB, CMYK, YCbCr, LAB, HSV) with Pillow.

A constant image whose values lie outside those ranges maps to black.
"""
from __future__ import annotations

import operator

import numpy as np
from PIL import Image, ImageColor

DEFAULT_BACKGROUND = "white"
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")


def parse_background(value) -> tuple[int, int, int]:
    """(r, g, b) of a colour given as a name ("white"), "#rrggbb" or three ints in 0..255."""
    expected = "a colour name such as 'white', '#rrggbb', or three ints (r, g, b) in 0..255"
    if isinstance(value, str):
        try:
            rgb = ImageColor.getrgb(value)
        except ValueError:
            raise ValueError(f"background must be {expected}, got {value!r}") from None
        if len(rgb) == 4 and rgb[3] != 255:
            raise ValueError(f"background must be opaque, got {value!r} (alpha {rgb[3]})")
        return tuple(rgb[:3])
    try:
        rgb = tuple(operator.index(v) for v in value if not isinstance(v, bool))
    except TypeError:
        raise ValueError(f"background must be {expected}, got {value!r}") from None
    if len(rgb) != 3 or len(rgb) != len(value) or not all(0 <= v <= 255 for v in rgb):
        raise ValueError(f"background must be {expected}, got {value!r}")
    return rgb


def has_transparency(im: Image.Image) -> bool:
    return im.mode in ALPHA_MODES or "transparency" in im.info


def _scale_to_uint8(arr: np.ndarray, full_scale: float | None) -> np.ndarray:
    """Values / full_scale * 255, or the array's own min..max onto 0..255 when full_scale is None."""
    x = arr.astype(np.float64)
    if full_scale is None:
        lo, hi = float(x.min()), float(x.max())
        x = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
    else:
        x = x / full_scale
    return np.rint(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def high_bit_to_l(im: Image.Image) -> Image.Image:
    """An 8-bit greyscale ("L") image of an I;16*, I or F image, scaled as the module doc says."""
    arr = np.asarray(im)
    if im.mode in SIXTEEN_BIT_MODES:
        out = _scale_to_uint8(arr, 65535.0)
    elif im.mode == "I":
        in_16_bit = arr.size == 0 or (arr.min() >= 0 and arr.max() <= 65535)
        out = _scale_to_uint8(arr, 65535.0 if in_16_bit else None)
    else:  # "F"
        arr = np.nan_to_num(arr, nan=0.0, posinf=np.finfo(np.float32).max, neginf=np.finfo(np.float32).min)
        in_unit = arr.size == 0 or (arr.min() >= 0 and arr.max() <= 1)
        out = _scale_to_uint8(arr, 1.0 if in_unit else None)
    return Image.fromarray(out, mode="L")


def to_rgb(im: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """An RGB image of `im`: transparency composited over `background`, high bit depths scaled."""
    if im.mode in SIXTEEN_BIT_MODES or im.mode in ("I", "F"):
        return high_bit_to_l(im).convert("RGB")
    if has_transparency(im):
        if im.mode == "La":  # premultiplied grey: Pillow converts it to RGBA only through LA
            im = im.convert("LA")
        rgba = im.convert("RGBA")
        base = Image.new("RGBA", rgba.size, tuple(background) + (255,))
        return Image.alpha_composite(base, rgba).convert("RGB")
    return im.convert("RGB")
