"""What each of a CMLTNet's heads contributes to its predictions.

A CMLTNet's logits are a sum of heads (CMLTNet.head_logits): the classifier on the (fused) features,
and optionally the semantic head (cosines between the inferred word vector and the class
prototypes, times a learned scale) and the text-anchor head. Their learned scales alone do not say
whether a head helps: a head can be small because training found it useless, or useful and small.
`head_contributions` answers it by accuracy: each head alone, and the sum without each head, on
the same images, with long-tail accuracy per shot group (used by `pycmlt analyze`)."""
from __future__ import annotations

from typing import Callable, Mapping

import torch

from pycmlt.evaluation.classification_metrics import longtail_accuracy

GROUP_KEYS = ("top1", "mean_class_accuracy", "many", "medium", "few")


def head_combinations(heads: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The logits to score: "all" (the model's own sum), "<head> only" for every head and, with three
    or more heads, "without <head>" (with two, that is the other head alone)."""
    if not heads:
        raise ValueError("heads must name at least one head's logits")
    shapes = {tuple(t.shape) for t in heads.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(f"every head's logits must be one [N, C] shape, got {sorted(shapes)}")
    names = list(heads)
    combos = {"all": sum(heads[n] for n in names)}
    if len(names) > 1:
        combos.update({f"{n} only": heads[n] for n in names})
    if len(names) > 2:
        combos.update({f"without {n}": sum(heads[m] for m in names if m != n) for n in names})
    return combos


def head_contributions(heads: Mapping[str, torch.Tensor], labels: torch.Tensor, train_counts: torch.Tensor,
                       read_logits: Callable[[torch.Tensor], torch.Tensor] = lambda x: x) -> dict[str, dict]:
    """Long-tail accuracy (GROUP_KEYS) of every head_combinations entry. read_logits maps logits to the
    ones read at test time (the run's post-hoc adjustment, if any)."""
    result = {}
    for name, logits in head_combinations(heads).items():
        acc = longtail_accuracy(read_logits(logits).argmax(1), labels, train_counts).to_dict()
        result[name] = {k: acc[k] for k in GROUP_KEYS}
    return result
