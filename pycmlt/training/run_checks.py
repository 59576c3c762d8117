"""Checks of a run's data before its first step, so that a bad set-up fails in seconds with a
clear message instead of after training: every split has examples, and every class has at least
one training image. The rule for a class without training images is the same for every method: it
is an error naming the classes (class-balanced weights, margins and priors need a count > 0, and
the class could never be learned); remove the class from the data or give it training images."""
from __future__ import annotations

import torch

SHOWN = 10  # class names listed in the message


def check_run_data(config, splits: dict) -> None:
    """splits: split name -> dataset; the "train" split's class counts are checked."""
    for name, dataset in splits.items():
        if len(dataset) == 0:
            raise ValueError(f"the {name} split of dataset {config.dataset!r} is empty"
                             + (f" (data_root {config.data_root})" if config.data_root else "")
                             + f": a run needs at least one {name} example")
    train = splits["train"]
    counts = torch.as_tensor(train.class_counts)
    empty = [train.classes[i] for i in (counts <= 0).nonzero().flatten().tolist()]
    if empty:
        shown = ", ".join(map(repr, empty[:SHOWN])) + (f" and {len(empty) - SHOWN} more" if len(empty) > SHOWN else "")
        raise ValueError(f"{len(empty)} of {len(counts)} classes have no training images: {shown}; every method "
                         "needs at least one training image per class: remove these classes from the data or "
                         "add training images")
