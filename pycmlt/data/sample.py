"""One sample / batch structure for every dataset, and the collate function that builds batches.

A dataset item is a `Sample`: a normalised image, a label (an int for single-label data, a multi-hot
float row for multi-label data), the ids of its descriptional words (possibly none) and its index in
the dataset. `collate` stacks samples into a `Batch` and pads the word ids with -1 (plus a mask).
With `skip_bad=True` a dataset returns a `BadSample` for an unreadable image; `collate` drops it and
lists its path in `Batch.bad_paths`, so the count survives DataLoader worker processes.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Sequence

import torch

WORD_PAD = -1  # padding value of Batch.word_ids


@dataclass
class Sample:
    image: torch.Tensor          # float [3, H, W], normalised
    label: int | torch.Tensor    # int (single-label) or float [C] multi-hot (multi-label)
    word_ids: torch.Tensor       # long [k], k >= 0: ids into the dataset's vocabulary
    index: int                   # position of the sample in its dataset


@dataclass
class BadSample:
    """Placeholder returned (with skip_bad=True) for an image that could not be read."""
    index: int
    path: str
    reason: str


@dataclass
class Batch:
    images: torch.Tensor        # float [B, 3, H, W]
    labels: torch.Tensor        # long [B] (single-label) or float [B, C] (multi-label)
    word_ids: torch.Tensor      # long [B, K], padded with WORD_PAD (-1); K = longest word list (may be 0)
    word_mask: torch.Tensor     # bool [B, K], True where word_ids holds a word
    indices: torch.Tensor       # long [B], dataset indices of the samples
    bad_paths: list[str] = field(default_factory=list)  # images skipped in this batch (skip_bad=True)

    def __len__(self) -> int:
        return int(self.indices.numel())

    @property
    def multi_label(self) -> bool:
        return self.labels.dim() == 2

    def to(self, device, non_blocking: bool = False) -> "Batch":
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        for name, value in moved.items():
            if isinstance(value, torch.Tensor):
                moved[name] = value.to(device, non_blocking=non_blocking)
        return Batch(**moved)

    def pin_memory(self) -> "Batch":
        """Called by DataLoader(pin_memory=True)."""
        pinned = {f.name: getattr(self, f.name) for f in fields(self)}
        for name, value in pinned.items():
            if isinstance(value, torch.Tensor):
                pinned[name] = value.pin_memory()
        return Batch(**pinned)

    def word_lists(self) -> list[list[int]]:
        """The unpadded word ids of each sample."""
        return [row[mask].tolist() for row, mask in zip(self.word_ids, self.word_mask)]


def pad_word_ids(word_ids: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad a list of 1-D long tensors to [B, K] with WORD_PAD; returns (ids, mask)."""
    k = max((int(w.numel()) for w in word_ids), default=0)
    ids = torch.full((len(word_ids), k), WORD_PAD, dtype=torch.long)
    for i, w in enumerate(word_ids):
        if w.numel():
            ids[i, : w.numel()] = w
    return ids, ids != WORD_PAD


def collate(samples: Sequence[Sample | BadSample]) -> Batch:
    """DataLoader collate_fn: stack `Sample`s into a `Batch`; `BadSample`s are dropped and reported."""
    bad = [s.path for s in samples if isinstance(s, BadSample)]
    good = [s for s in samples if not isinstance(s, BadSample)]
    if not good:
        return Batch(images=torch.empty(0, 3, 0, 0), labels=torch.empty(0, dtype=torch.long),
                     word_ids=torch.empty(0, 0, dtype=torch.long), word_mask=torch.empty(0, 0, dtype=torch.bool),
                     indices=torch.empty(0, dtype=torch.long), bad_paths=bad)
    images = torch.stack([s.image for s in good])
    if isinstance(good[0].label, torch.Tensor) and good[0].label.dim() == 1:
        labels = torch.stack([s.label for s in good]).to(torch.float32)
    else:
        labels = torch.tensor([int(s.label) for s in good], dtype=torch.long)
    word_ids, word_mask = pad_word_ids([s.word_ids for s in good])
    indices = torch.tensor([s.index for s in good], dtype=torch.long)
    return Batch(images=images, labels=labels, word_ids=word_ids, word_mask=word_mask, indices=indices,
                 bad_paths=bad)
