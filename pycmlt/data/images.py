"""Reading image files: decode, turn into RGB, resize to the configured resolution.

Decoding follows `pycmlt.data.image_modes.to_rgb` (transparency over a background colour, 16-bit
images scaled). Large images are reduced as early as the format allows: JPEG files are decoded at
a reduced scale (`draft`), and L/LA/RGB/RGBA images are box-reduced right after decoding, before
any conversion, by the factor the final resize would use anyway. Pillow's decompression-bomb
limit (`PIL.Image.MAX_IMAGE_PIXELS`, twice that is refused) applies: such a file is a bad image.

A missing, unreadable or refused file raises `ImageLoadError` naming the path. Datasets built with
`skip_bad=True` catch it, record the path in their `BadImageLog` and hand a `BadSample` to
`collate`, which drops it from the batch and lists it in `Batch.bad_paths`.
"""
from __future__ import annotations

import operator
import os
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from pycmlt.data.image_modes import DEFAULT_BACKGROUND, parse_background, to_rgb

RESIZE_MODES = ("crop", "squash")
REDUCIBLE_MODES = ("L", "LA", "RGB", "RGBA")  # box-reducing these commutes with to_rgb


class ImageLoadError(OSError):
    """An image file is missing or cannot be decoded. `path` names the file."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot read image {self.path}: {reason} "
                         "(build the dataset with skip_bad=True to skip and count bad images)")


def check_size(size, name: str = "size") -> int:
    """`size` as a positive int (an output resolution in pixels), else ValueError naming `name`."""
    try:
        if isinstance(size, bool):
            raise TypeError
        size = operator.index(size)
    except TypeError:
        raise ValueError(f"{name} must be a positive int (pixels), got {size!r}") from None
    if size < 1:
        raise ValueError(f"{name} must be a positive int (pixels), got {size}")
    return size


def check_resize(resize) -> str:
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
    return resize


def stat_image(path: str | Path) -> os.stat_result:
    """os.stat of an image file; ImageLoadError when it is missing or not a regular file."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ImageLoadError(path, "no such file") from None
    except OSError as e:
        raise ImageLoadError(path, f"{type(e).__name__}: {e.strerror or e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageLoadError(path, "is a directory, not an image file")
    if not stat.S_ISREG(st.st_mode):
        raise ImageLoadError(path, "not a regular file")
    return st


def _target_size(w: int, h: int, size: int, mode: str) -> tuple[int, int]:
    """Size the image is resized to before the centre crop ("crop": shorter side = size)."""
    if mode == "squash":
        return size, size
    scale = size / min(w, h)
    return max(size, round(w * scale)), max(size, round(h * scale))


def _reduce_factors(w: int, h: int, target: tuple[int, int], gap: float = 2.0) -> tuple[int, int]:
    """The box-reduction factors Pillow's resize(reducing_gap=gap) would apply first."""
    return max(1, int(w / target[0] / gap)), max(1, int(h / target[1] / gap))


def _decode_rgb(im: Image.Image, size: int, resize: str, background: tuple[int, int, int]) -> Image.Image:
    """The RGB image at size x size of an opened image (see the module doc for the order of steps)."""
    im.draft("RGB", (size, size))  # JPEG: decode at a reduced scale when much larger than needed
    im = ImageOps.exif_transpose(im)  # camera photos: apply the EXIF orientation
    w, h = im.size
    target = _target_size(w, h, size, resize)
    fx, fy = _reduce_factors(w, h, target)
    box = (0.0, 0.0, float(w), float(h))
    if (fx > 1 or fy > 1) and im.mode in REDUCIBLE_MODES and "transparency" not in im.info:
        im = im.reduce((fx, fy))  # before converting: far fewer pixels to composite (Pillow premultiplies RGBA)
        box = (0.0, 0.0, w / fx, h / fy)  # the same sampling as resize's own reducing step
    im = to_rgb(im, background)
    im = im.resize(target, Image.Resampling.BILINEAR, box=box, reducing_gap=2.0)
    left, top = (target[0] - size) // 2, (target[1] - size) // 2
    return im.crop((left, top, left + size, top + size)) if target != (size, size) else im


def load_image(path: str | Path, size: int, resize: str = "crop", background=DEFAULT_BACKGROUND) -> torch.Tensor:
    """uint8 tensor [3, size, size] of the image at `path` (RGB, EXIF orientation applied).

    resize: "crop" scales the shorter side to `size` and takes the centre square; "squash" resizes
    to size x size ignoring the aspect ratio. background: the colour transparent pixels are
    composited over (a name, "#rrggbb" or (r, g, b); white by default). Raises ValueError for a bad
    argument and ImageLoadError for a missing, corrupt or over-large (decompression bomb) file.
    """
    size, resize = check_size(size), check_resize(resize)
    background = parse_background(background)
    stat_image(path)
    try:
        with Image.open(path) as im:
            arr = np.asarray(_decode_rgb(im, size, resize, background), dtype=np.uint8)
    except Image.DecompressionBombError as e:
        raise ImageLoadError(path, f"decompression bomb: {e}") from e
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:  # truncated/corrupt data
        raise ImageLoadError(path, f"{type(e).__name__}: {e}") from e
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


class BadImageLog:
    """Images skipped because they could not be read (thread-safe). In DataLoader worker processes
    each worker keeps its own log; `Batch.bad_paths` carries the paths back to the main process."""

    def __init__(self):
        self._lock = threading.Lock()
        self._entries: dict[str, str] = {}

    def __getstate__(self):  # picklable (DataLoader workers with the spawn start method): no lock
        return {"entries": dict(self._entries)}

    def __setstate__(self, state):
        self._lock = threading.Lock()
        self._entries = dict(state["entries"])

    def add(self, path: str, reason: str) -> None:
        with self._lock:
            self._entries.setdefault(str(path), reason)

    def update(self, paths: Iterable[str], reason: str = "skipped") -> None:
        for p in paths:
            self.add(p, reason)

    @property
    def count(self) -> int:
        return len(self._entries)

    @property
    def paths(self) -> list[str]:
        return sorted(self._entries)

    def to_dict(self) -> dict:
        """For the run report: {"count": n, "paths": [...], "reasons": {path: reason}}."""
        with self._lock:
            return {"count": len(self._entries), "paths": sorted(self._entries), "reasons": dict(self._entries)}

    def __len__(self) -> int:
        return self.count

    def __repr__(self) -> str:
        return f"BadImageLog({self.count} bad images)"


def check_images(paths: list[str], load: Callable[[str], object], num_threads: int = 8) -> dict[str, str]:
    """Call `load(path)` on every path (in threads: Pillow decodes without the GIL); returns
    {path: reason} of those that raise ImageLoadError."""
    def one(p):
        try:
            load(p)
            return None
        except ImageLoadError as e:
            return p, e.reason

    with ThreadPoolExecutor(max_workers=max(1, num_threads)) as pool:
        return dict(r for r in pool.map(one, paths) if r is not None)
