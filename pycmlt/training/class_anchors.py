"""Class-text anchors for CMLTNet's text-anchor head (TrainConfig.text_anchors): each class described
as "<class name>: <its most telling training words>" and embedded once by a frozen pretrained text
model (MiniLM, offline). Words are privileged information, so they are read from the training split
only; the anchors are stored in the model and no text is needed at test time."""
from __future__ import annotations

import torch

from pycmlt.models import class_word_profile

ANCHOR_WORDS = 8  # training words per class description


def class_texts(classes, word_lists, targets, vocab, num_words: int = ANCHOR_WORDS) -> list[str]:
    """One description per class: its name, then its `num_words` highest-weighted words by the class
    word profile (share of the class's images with the word x log(C / classes using it)), so words
    every class shares ("face", "person" in emoji-lt) rank below the ones that tell classes apart."""
    vocab = list(vocab)
    profile = class_word_profile(word_lists, targets, len(classes), len(vocab))
    texts = []
    for c, name in enumerate(classes):
        weights, ids = profile[c].topk(min(num_words, len(vocab))) if len(vocab) else (torch.zeros(0), [])
        words = [vocab[i].replace("_", " ") for w, i in zip(weights.tolist(), ids.tolist()) if w > 0]
        label = str(name).replace("_", " ").replace("-", " ")
        texts.append(f"{label}: {', '.join(words)}" if words else label)
    return texts


def class_anchor_vectors(train_set, source: str = "minilm") -> torch.Tensor:
    """[C, D] unit-norm embeddings of class_texts(train_set) (D = 384 for MiniLM); cached on disk."""
    from pycmlt.text import pretrained_word_vectors

    texts = class_texts(train_set.classes, train_set.word_id_lists(), train_set.targets, train_set.vocab)
    return pretrained_word_vectors(texts, source=source, text=lambda t: t)
