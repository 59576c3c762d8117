"""The dataset interface shared by every pycmlt dataset (emoji-lt, hanzi-lt, synthetic, NUS-WIDE,
VireoFood-172, manifest) and its two storage flavours: images held in memory (`ArrayDataset`) and
images read from files (`FileDataset`).

Every dataset object is one split and exposes:
  classes        list[str]            class names; labels index into it
  vocab          Vocabulary           the descriptional words (a Sequence[str]) built from the TRAIN split
  multi_label    bool                 labels are multi-hot rows instead of ints
  class_counts   LongTensor [C]       TRAINING count of every class (positives per class when
                                      multi-label) -- the same tensor on every split's object, since
                                      losses and shot groups need the training distribution
  split_counts   LongTensor [C]       the same counts for this object's own split
  word_counts    LongTensor [V]       training images carrying each word (= vocab.counts)
  split, name, image_size, mean, std, meta (dict of per-dataset metadata and flags), bad_images
and `ds[i] -> Sample`, `words(i)` (raw words, including those unknown to the vocabulary),
`word_ids(i)`, `raw_image(i)` (uint8 [3, S, S]), `info(i)` (dict describing the sample),
`item_key(i)` (the distinct item the sample shows: renderings of one emoji share a key; paired
bootstraps resample keys, not samples),
`targets` (all labels as one tensor), `summary()`.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from pycmlt.data.image_cache import DecodedImageCache
from pycmlt.data.image_modes import DEFAULT_BACKGROUND, parse_background
from pycmlt.data.images import BadImageLog, ImageLoadError, check_images, check_resize, check_size, load_image
from pycmlt.data.sample import BadSample, Sample
from pycmlt.data.transforms import IMAGENET_MEAN, IMAGENET_STD, eval_transform, train_transform
from pycmlt.data.vocab import Vocabulary
from pycmlt.data.words import WordTable

SPLITS = ("train", "val", "test")


def class_counts_of(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Examples per class: bincount of single labels, or positives per column of multi-hot rows."""
    if labels.dim() == 2:
        return (labels > 0).sum(0).to(torch.long)
    return torch.bincount(labels.to(torch.long), minlength=num_classes)[:num_classes] if labels.numel() \
        else torch.zeros(num_classes, dtype=torch.long)


class LTDataset(Dataset):
    """Base class; subclasses implement `_load_raw(i) -> uint8 [3, S, S]` and `info(i)`."""

    def __init__(self, *, name: str, split: str, classes: Sequence[str], vocab: Vocabulary,
                 labels: torch.Tensor, words: WordTable, class_counts: torch.Tensor, image_size: int,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 augment: bool | None = None, transform: Callable | None = None, meta: dict | None = None):
        self.name = name
        self.split = split
        self.classes = list(classes)
        self.vocab = vocab
        labels = torch.as_tensor(labels)
        self.multi_label = labels.dim() == 2
        if self.multi_label:
            labels = labels.to(torch.bool)  # stored compactly; Sample gets float rows
            if labels.shape[1] != len(self.classes):
                raise ValueError(f"multi-hot labels have {labels.shape[1]} columns for {len(self.classes)} classes")
        else:
            labels = labels.to(torch.long)
            if labels.numel() and (labels.min() < 0 or labels.max() >= len(self.classes)):
                raise ValueError("labels out of range of the class list")
        self._labels = labels
        if len(words) != len(labels):
            raise ValueError(f"{len(words)} word lists for {len(labels)} labels")
        self._words = words
        self._word_flat, self._word_offsets = words.encode(vocab)
        self.class_counts = torch.as_tensor(class_counts, dtype=torch.long)
        self.split_counts = class_counts_of(labels, len(self.classes))
        self.image_size = int(image_size)
        self.mean, self.std = tuple(mean), tuple(std)
        self.meta: dict[str, Any] = dict(meta or {})
        self.bad_images = BadImageLog()
        self.augment = (split == "train") if augment is None else bool(augment)
        self.transform = transform if transform is not None else self.default_transform(self.augment)

    # -- transforms
    def default_transform(self, augment: bool) -> Callable:
        if augment:
            return train_transform(self.mean, self.std, image_size=self.image_size, flip=self.meta.get("flip_ok", True))
        return eval_transform(self.mean, self.std)

    def set_augment(self, augment: bool) -> None:
        """Switch between the training augmentation and the plain normalisation."""
        self.augment = bool(augment)
        self.transform = self.default_transform(self.augment)

    # -- items
    def __len__(self) -> int:
        return int(self._labels.shape[0])

    def _load_raw(self, i: int) -> torch.Tensor:
        raise NotImplementedError

    def raw_image(self, i: int) -> torch.Tensor:
        """uint8 [3, S, S] image before the transform."""
        return self._load_raw(int(i))

    def label(self, i: int) -> int | torch.Tensor:
        if self.multi_label:
            return self._labels[i].to(torch.float32)
        return int(self._labels[i])

    @property
    def targets(self) -> torch.Tensor:
        """All labels: long [N], or float [N, C] multi-hot."""
        return self._labels.to(torch.float32) if self.multi_label else self._labels

    def word_ids(self, i: int) -> torch.Tensor:
        return self._word_flat[self._word_offsets[i]:self._word_offsets[i + 1]]

    def word_id_lists(self) -> list[list[int]]:
        o = self._word_offsets.tolist()
        flat = self._word_flat.tolist()
        return [flat[o[i]:o[i + 1]] for i in range(len(self))]

    def words(self, i: int) -> list[str]:
        """Raw descriptional words of sample i (those unknown to the vocabulary included)."""
        return self._words.words(int(i))

    @property
    def word_counts(self) -> torch.Tensor:
        return self.vocab.counts

    def item_key(self, i: int) -> str:
        """The distinct item sample i shows (default: every sample is its own item)."""
        return str(int(i))

    def info(self, i: int) -> dict:
        return {"index": int(i), "label": self.label(i) if not self.multi_label else
                [self.classes[c] for c in torch.nonzero(self._labels[i]).flatten().tolist()],
                "words": self.words(i)}

    def __getitem__(self, i: int) -> Sample | BadSample:
        i = int(i)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} samples")
        try:
            raw = self._load_raw(i)
        except ImageLoadError as e:
            if not getattr(self, "skip_bad", False):
                raise
            self.bad_images.add(e.path, e.reason)
            return BadSample(index=i, path=e.path, reason=e.reason)
        return Sample(image=self.transform(raw), label=self.label(i), word_ids=self.word_ids(i).clone(), index=i)

    def summary(self) -> dict:
        from pycmlt.data.stats import summarize
        return summarize(self)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, split={self.split!r}, {len(self)} images, "
                f"{len(self.classes)} classes, {len(self.vocab)} words, multi_label={self.multi_label})")


class ArrayDataset(LTDataset):
    """Images held in memory as one uint8 tensor [N, 3, S, S] (emoji-lt, hanzi-lt, synthetic)."""

    def __init__(self, images: torch.Tensor, **kw):
        images = torch.as_tensor(images)
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be uint8 [N, 3, S, S], got {images.dtype} {list(images.shape)}")
        self.images = images
        self.skip_bad = False
        super().__init__(image_size=images.shape[-1], **kw)
        if len(images) != len(self):
            raise ValueError(f"{len(images)} images for {len(self)} labels")

    def _load_raw(self, i: int) -> torch.Tensor:
        return self.images[i]


class FileDataset(LTDataset):
    """Images read from files on access, resized to `image_size` (NUS-WIDE, VireoFood-172, manifest).

    skip_bad=False: a missing or corrupt image raises ImageLoadError naming the path.
    skip_bad=True: it yields a BadSample (dropped by collate, listed in Batch.bad_paths) and is
    recorded in `bad_images`; `verify_images()` finds all bad files up front and removes them.
    background: the colour transparent images are composited over (white by default).
    image_cache=True: each image is decoded once at this resolution and read back from the
    decoded-image cache afterwards (pycmlt.data.image_cache; under `cache_root`, default the
    pycmlt cache folder); image_cache=False decodes the file on every access.
    """

    def __init__(self, paths: Sequence[str], *, image_size: int = 224, resize: str = "crop",
                 skip_bad: bool = False, background=DEFAULT_BACKGROUND, image_cache: bool = True,
                 cache_root: str | None = None, **kw):
        image_size = check_size(image_size, "image_size")
        if not isinstance(image_cache, bool):
            raise ValueError(f"image_cache must be True or False, got {image_cache!r}")
        self.paths = [str(p) for p in paths]
        self.resize = check_resize(resize)
        self.background = parse_background(background)
        self.skip_bad = bool(skip_bad)
        self.image_cache = (DecodedImageCache(image_size, self.resize, self.background, cache_root)
                            if image_cache else None)
        super().__init__(image_size=image_size, **kw)
        if len(self.paths) != len(self):
            raise ValueError(f"{len(self.paths)} image paths for {len(self)} labels")

    def load_path(self, path: str) -> torch.Tensor:
        """uint8 [3, S, S] of one image file, through the decoded-image cache when it is on."""
        if self.image_cache is not None:
            return self.image_cache.load(path)
        return load_image(path, self.image_size, self.resize, self.background)

    def _load_raw(self, i: int) -> torch.Tensor:
        return self.load_path(self.paths[i])

    def info(self, i: int) -> dict:
        return {**super().info(i), "path": self.paths[i]}

    def item_key(self, i: int) -> str:
        """The image file."""
        return self.paths[i]

    def verify_images(self, num_threads: int = 8) -> dict[str, str]:
        """Decode every image once (filling the decoded-image cache when it is on). Bad ones raise
        ImageLoadError (skip_bad=False) or are removed from this split and recorded in `bad_images`
        (skip_bad=True). Returns {path: reason}."""
        bad = check_images(self.paths, self.load_path, num_threads=num_threads)
        if not bad:
            return {}
        if not self.skip_bad:
            path = next(p for p in self.paths if p in bad)
            raise ImageLoadError(path, bad[path])
        for p, reason in bad.items():
            self.bad_images.add(p, reason)
        keep = np.asarray([k for k, p in enumerate(self.paths) if p not in bad], dtype=np.int64)
        self.paths = [self.paths[k] for k in keep]
        self._labels = self._labels[torch.from_numpy(keep)]
        self._words = self._words.subset(keep)
        self._word_flat, self._word_offsets = self._words.encode(self.vocab)
        self.split_counts = class_counts_of(self._labels, len(self.classes))
        if self.split == "train":  # objects of other splits built earlier keep the old counts
            self.class_counts = self.split_counts.clone()
        return bad
