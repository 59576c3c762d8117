"""The decoded-image cache of file datasets: each image decoded once per resolution, then read back.

Decoding a PNG or JPEG (often far larger than the training resolution) costs milliseconds; reading
the 3 x S x S bytes it becomes costs microseconds. `DecodedImageCache.load(path)` returns the image
as `load_image` would, from a cache entry when there is a valid one, else it decodes the file and
stores the result.

Layout: `<root>/images/v1-<S>px-<resize>-<background hex>/<2 hex>/<key>.u8`, root defaulting to
`pycmlt.data.cache.cache_dir()`. The key is a hash of the file's absolute path, its size and its
modification time (ns): a changed file gets a new key and is decoded again; the decode settings
are in the folder name. An entry is the raw uint8 pixels [3, S, S] followed by their CRC-32;
a reader checks both the length and the CRC, so a damaged entry is decoded again, never returned.
Entries are written to a temporary file in the same folder and renamed into place: a killed
writer leaves no partial entry, readers never see one, and concurrent writers (DataLoader workers,
parallel runs) at worst write the same bytes twice. A file that fails to decode raises
ImageLoadError naming it (nothing is stored). If the cache folder cannot be written, decoding
goes on uncached with one warning. Old entries are never deleted: remove the folder to reclaim
the space.
"""
from __future__ import annotations

import hashlib
import os
import warnings
import zlib
from pathlib import Path

import torch

from pycmlt.atomic_write import atomic_write_bytes
from pycmlt.data.cache import cache_dir
from pycmlt.data.image_modes import DEFAULT_BACKGROUND, parse_background
from pycmlt.data.images import check_resize, check_size, load_image, stat_image

FORMAT = "v1"  # bump when decoding changes (image_modes, load_image), so old entries are not reused
_CRC_BYTES = 4
_warned_unwritable: set[str] = set()


class DecodedImageCache:
    """Images decoded at (size, resize, background), cached under `root` (see the module doc)."""

    def __init__(self, size: int, resize: str = "crop", background=DEFAULT_BACKGROUND,
                 root: str | Path | None = None):
        self.size = check_size(size)
        self.resize = check_resize(resize)
        self.background = parse_background(background)
        base = Path(root).expanduser() if root is not None else cache_dir()
        colour = "".join(f"{c:02x}" for c in self.background)
        self.folder = base / "images" / f"{FORMAT}-{self.size}px-{self.resize}-{colour}"
        self._nbytes = 3 * self.size * self.size

    def entry_path(self, path: str | Path, st: os.stat_result) -> Path:
        ident = f"{os.path.abspath(path)}\0{st.st_size}\0{st.st_mtime_ns}".encode("utf-8", "surrogatepass")
        key = hashlib.sha256(ident).hexdigest()[:32]
        return self.folder / key[:2] / f"{key}.u8"

    def load(self, path: str | Path) -> torch.Tensor:
        """uint8 [3, S, S] of the image at `path`; ImageLoadError if it cannot be read."""
        st = stat_image(path)
        entry = self.entry_path(path, st)
        cached = self._read(entry)
        if cached is not None:
            return cached
        image = load_image(path, self.size, self.resize, self.background)
        try:
            unchanged = os.stat(path).st_mtime_ns == st.st_mtime_ns
        except OSError:
            unchanged = False
        if unchanged:  # a file rewritten while it was decoded is not stored under its old key
            self._write(entry, image)
        return image

    def _read(self, entry: Path) -> torch.Tensor | None:
        try:
            with open(entry, "rb") as f:
                data = f.read()
        except OSError:
            return None
        if len(data) != self._nbytes + _CRC_BYTES:
            return None
        pixels = data[:self._nbytes]
        if zlib.crc32(pixels).to_bytes(_CRC_BYTES, "little") != data[self._nbytes:]:
            return None
        return torch.frombuffer(bytearray(pixels), dtype=torch.uint8).view(3, self.size, self.size)

    def _write(self, entry: Path, image: torch.Tensor) -> None:
        pixels = image.contiguous().numpy().tobytes()
        try:  # not durable: a torn entry fails its checksum and is decoded again
            atomic_write_bytes(entry, pixels + zlib.crc32(pixels).to_bytes(_CRC_BYTES, "little"), durable=False)
        except OSError as e:
            if str(self.folder) not in _warned_unwritable:
                _warned_unwritable.add(str(self.folder))
                warnings.warn(f"cannot write the decoded-image cache in {self.folder} ({e}); images are "
                              "decoded without it (image_cache=False silences this; cache_root= moves it)",
                              stacklevel=3)

    def __repr__(self) -> str:
        return f"DecodedImageCache({self.folder})"
