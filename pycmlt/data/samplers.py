"""Class-balanced sampling (the "class-aware" sampler of Shen et al. 2016, used by decoupled cRT).

Each draw picks a class uniformly, then an example of that class uniformly (for multi-label data:
an example that is positive for the class). Deterministic for (seed, epoch); `set_epoch` as with
torch's DistributedSampler; with num_replicas > 1 each rank takes every num_replicas-th draw.
"""
from __future__ import annotations

import torch
from torch.utils.data import Sampler


class ClassBalancedSampler(Sampler[int]):
    def __init__(self, targets: torch.Tensor, num_samples: int | None = None, *, seed: int = 0,
                 num_replicas: int = 1, rank: int = 0):
        targets = torch.as_tensor(targets)
        if targets.dim() == 2:
            members = [torch.nonzero(targets[:, c] > 0).flatten() for c in range(targets.shape[1])]
        else:
            members = [torch.nonzero(targets == c).flatten() for c in range(int(targets.max()) + 1 if len(targets) else 0)]
        self.members = [m for m in members if len(m)]
        if not self.members:
            raise ValueError("ClassBalancedSampler needs at least one labelled example")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, {num_replicas}), got {rank}")
        self.total = int(num_samples if num_samples is not None else len(targets))
        self.total -= self.total % num_replicas  # every rank gets the same number of draws
        self.seed, self.epoch, self.num_replicas, self.rank = int(seed), 0, int(num_replicas), int(rank)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.total // self.num_replicas

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        classes = torch.randint(len(self.members), (self.total,), generator=g)
        picks = torch.rand(self.total, generator=g, dtype=torch.float64)
        out = []
        for c, u in zip(classes.tolist(), picks.tolist()):
            m = self.members[c]
            out.append(int(m[min(int(u * len(m)), len(m) - 1)]))
        return iter(out[self.rank::self.num_replicas])
