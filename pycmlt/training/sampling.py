"""Epoch orders that depend only on (seed, epoch), so an interrupted run that resumes sees exactly
the batches it would have seen; sharded across ranks for distributed training."""
from __future__ import annotations

import torch
from torch.utils.data import Sampler


def epoch_generator(seed: int, epoch: int, stream: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch * 7919 + stream) % (2**63))


class EpochSampler(Sampler[int]):
    """Uniform shuffling, or class-balanced sampling (a class uniformly, then one of its examples),
    of len(labels) indices per epoch; rank r of w takes every w-th index starting at r."""

    def __init__(self, labels: torch.Tensor, *, seed: int, class_balanced: bool = False, rank: int = 0,
                 world_size: int = 1):
        self.labels = labels
        self.seed, self.class_balanced = seed, class_balanced
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        n = len(labels)
        self.per_rank = (n + world_size - 1) // world_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _order(self) -> torch.Tensor:
        g = epoch_generator(self.seed, self.epoch)
        n = len(self.labels)
        if not self.class_balanced:
            return torch.randperm(n, generator=g)
        classes = torch.unique(self.labels)
        members = [torch.nonzero(self.labels == c).flatten() for c in classes]
        picks = torch.randint(len(classes), (n,), generator=g)
        within = torch.rand(n, generator=g)
        return torch.stack([members[c][int(u * len(members[c]))] for c, u in zip(picks.tolist(), within.tolist())])

    def __iter__(self):
        order = self._order()
        total = self.per_rank * self.world_size
        if total > len(order):  # pad so every rank gets the same number of indices
            order = torch.cat([order, order[: total - len(order)]])
        return iter(order[self.rank:total:self.world_size].tolist())

    def __len__(self) -> int:
        return self.per_rank
