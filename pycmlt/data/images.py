"""Reading image files: decode, convert to RGB, resize to the configured resolution.

A missing or unreadable file raises `ImageLoadError` naming the path. Datasets built with
`skip_bad=True` catch it, record the path in their `BadImageLog` and hand a `BadSample` to
`collate`, which drops it from the batch and lists it in `Batch.bad_paths`.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

RESIZE_MODES = ("crop", "squash")


class ImageLoadError(OSError):
    """An image file is missing or cannot be decoded. `path` names the file."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot read image {self.path}: {reason} "
                         "(build the dataset with skip_bad=True to skip and count bad images)")


def _resize(im: Image.Image, size: int, mode: str) -> Image.Image:
    if mode == "squash":
        return im.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    # "crop": shorter side to `size`, then the centre square
    w, h = im.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    im = im.resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=2.0)
    left, top = (nw - size) // 2, (nh - size) // 2
    return im.crop((left, top, left + size, top + size))


def load_image(path: str | Path, size: int, resize: str = "crop") -> torch.Tensor:
    """uint8 tensor [3, size, size] of the image at `path` (RGB, EXIF orientation applied).

    resize: "crop" scales the shorter side to `size` and takes the centre square; "squash" resizes
    to size x size ignoring the aspect ratio. Raises ImageLoadError for a missing or corrupt file.
    """
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
    path = Path(path)
    if not path.is_file():
        raise ImageLoadError(path, "no such file")
    try:
        with Image.open(path) as im:
            im.draft("RGB", (size, size))  # JPEG: decode at a reduced scale when much larger than needed
            im = ImageOps.exif_transpose(im)  # camera photos: apply the EXIF orientation
            im = im.convert("RGB")
            im = _resize(im, size, resize)
            arr = np.asarray(im, dtype=np.uint8)
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


def check_images(paths: list[str], size: int = 8, resize: str = "squash", num_threads: int = 8) -> dict[str, str]:
    """Decode every image (at a tiny size); returns {path: reason} of those that fail."""
    def one(p):
        try:
            load_image(p, size, resize)
            return None
        except ImageLoadError as e:
            return p, e.reason

    with ThreadPoolExecutor(max_workers=max(1, num_threads)) as pool:
        return dict(r for r in pool.map(one, paths) if r is not None)
