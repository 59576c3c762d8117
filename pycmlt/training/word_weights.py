"""Per-word weights of CMLTNet's word-prediction loss (L_CMI): which training words the model should
try hardest to predict from an image.

"class-balanced" (the paper's choice) weighs words by inverse effective frequency, so the rarest words
dominate: on emoji-lt 62% of the vocabulary is seen in one training image only, and such a word cannot
transfer to an unseen image. "discriminative" weighs a word by how much it says about the class:

    weight(w) ∝ KL( p(c | w) || p(c) ),   p(c | w) = (n(w, c) + a * p(c)) / (n(w) + a)

where n(w, c) counts the training images of class c that carry w, p(c) is the class prior and a
(`prior_strength`) shrinks the word's class distribution toward the prior. A word seen once is
mostly prior (small weight); a word seen often and mostly in a few classes gets a large one; a word
spread like the prior (e.g. an attribute shared by every class) gets little. Weights are scaled to
mean 1 over the words that occur in training; unseen words get 0.
"""
from __future__ import annotations

import torch

from pycmlt.ops.class_balance import class_balanced_weights
from pycmlt.training.config import WORD_WEIGHTINGS

PRIOR_STRENGTH = 5.0


def word_class_counts(word_id_lists, labels, num_classes: int, vocab_size: int) -> torch.Tensor:
    """[|V|, C] number of training images of each class carrying each word (a word counted once per
    image). labels: [N] class ids or [N, C] multi-hot (an image counts for each of its classes)."""
    labels = torch.as_tensor(labels)
    pairs = [(w, i) for i, ids in enumerate(word_id_lists) for w in set(ids)]  # (word, image), once per image
    counts = torch.zeros(vocab_size, num_classes)
    if not pairs:
        return counts
    words, images = torch.tensor(pairs, dtype=torch.long).t()
    if labels.dim() == 2:  # no dense [N, |V|] matrix: only the (word, image) pairs that occur
        return counts.index_add_(0, words, labels[images].float())
    return counts.index_put_((words, labels[images].long()), torch.ones(len(words)), accumulate=True)


def discriminative_word_weights(counts: torch.Tensor, prior_strength: float = PRIOR_STRENGTH) -> torch.Tensor:
    """[|V|] weights from word-class counts [|V|, C] (see the module docstring)."""
    if prior_strength <= 0:
        raise ValueError(f"prior_strength must be > 0, got {prior_strength}")
    counts = counts.double()
    class_totals = counts.sum(0)
    prior = (class_totals + 1.0) / (class_totals + 1.0).sum()  # +1: classes whose images carry no word
    per_word = counts.sum(1, keepdim=True)
    posterior = (counts + prior_strength * prior) / (per_word + prior_strength)
    kl = (posterior * (posterior / prior).log()).sum(1)
    seen = per_word.squeeze(1) > 0
    weights = torch.where(seen, kl, torch.zeros_like(kl))
    mean = weights[seen].mean() if seen.any() else torch.tensor(1.0, dtype=torch.float64)
    return (weights / mean.clamp_min(1e-12)).float()


def word_loss_weights(kind: str, train_set, *, beta: float) -> torch.Tensor | None:
    """The [|V|] weights of the word-prediction loss for `kind` (one of WORD_WEIGHTINGS), or None.
    train_set: an LTDataset (its training words, labels and word counts)."""
    if kind == "none":
        return None
    if kind == "class-balanced":
        return class_balanced_weights(torch.as_tensor(train_set.word_counts).clamp_min(1), beta)
    if kind == "discriminative":
        counts = word_class_counts(train_set.word_id_lists(), train_set.targets, len(train_set.classes),
                                   len(train_set.vocab))
        return discriminative_word_weights(counts)
    raise ValueError(f"word_weighting must be one of {WORD_WEIGHTINGS}, got {kind!r}")
