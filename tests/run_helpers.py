"""Test helpers that interfere with a training run: kill it in a given epoch, or make building the
test split fail (to prove that a code path never reads test)."""
from __future__ import annotations

from pycmlt.data import registry
from pycmlt.training import epoch_loop


def kill_in_epoch(monkeypatch, epoch: int):
    """Training raises KeyboardInterrupt (as a kill would) when it starts epoch `epoch` (1-based).
    Returns the real epoch_loop.train_epoch, to put back or to wrap."""
    real = epoch_loop.train_epoch

    def dies(run, trainer, index):
        if index == epoch - 1:
            raise KeyboardInterrupt
        return real(run, trainer, index)

    monkeypatch.setattr(epoch_loop, "train_epoch", dies)
    return real


def forbid_test_split(monkeypatch, what: str, dataset: str = "synthetic") -> None:
    """Building the test split of `dataset` raises AssertionError("<what> built the test split")."""
    real = registry.DATASETS[dataset]

    def no_test(split, **options):
        if split == "test":
            raise AssertionError(f"{what} built the test split")
        return real(split, **options)

    monkeypatch.setitem(registry.DATASETS, dataset, no_test)
