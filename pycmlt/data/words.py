"""Per-image descriptional words, stored compactly (CSR: one flat id array plus offsets into it).

A `WordTable` keeps the *raw* words of every image (before vocabulary filtering) as ids into a
lexicon of distinct strings. It is cheap to pickle into DataLoader workers and to subset, and maps
to vocabulary ids in one vectorised step.
"""
from __future__ import annotations

import re
from typing import Iterable, Sequence

import numpy as np
import torch

from pycmlt.data.vocab import Vocabulary

# Function words dropped when free text (emoji keywords, names) is split into words.
STOPWORDS = frozenset({"a", "an", "the", "of", "and", "or", "with", "in", "on", "at", "to", "for", "by",
                       "from", "&", "-", "as", "is"})
_SPLIT = re.compile(r"[\s,;:/()\[\]\"“”!?]+")


def tokenize(text: str, *, stopwords: frozenset[str] = STOPWORDS) -> list[str]:
    """Lower-cased words of a free-text phrase: split on white space and punctuation (hyphens,
    apostrophes, '+' and '.' inside a word are kept: "t-shirt", "+1", "o'clock"), stop words dropped."""
    out = []
    for tok in _SPLIT.split(text.lower()):
        tok = tok.strip(".'’-")
        if tok and tok not in stopwords:
            out.append(tok)
    return out


class WordTable:
    def __init__(self, lexicon: Sequence[str], flat: np.ndarray, offsets: np.ndarray):
        self.lexicon = list(lexicon)
        self.flat = np.asarray(flat, dtype=np.int32)
        self.offsets = np.asarray(offsets, dtype=np.int64)
        if self.offsets.ndim != 1 or self.offsets[0] != 0 or self.offsets[-1] != len(self.flat):
            raise ValueError("WordTable offsets must start at 0 and end at len(flat)")

    @classmethod
    def from_lists(cls, word_lists: Iterable[Iterable[str]]) -> "WordTable":
        lex: dict[str, int] = {}
        flat: list[int] = []
        offsets = [0]
        for words in word_lists:
            seen = set()
            for w in words:
                j = lex.setdefault(w, len(lex))
                if j not in seen:
                    seen.add(j)
                    flat.append(j)
            offsets.append(len(flat))
        return cls(list(lex), np.asarray(flat, dtype=np.int32), np.asarray(offsets, dtype=np.int64))

    @classmethod
    def from_indicator(cls, lexicon: Sequence[str], matrix: np.ndarray) -> "WordTable":
        """From an N x len(lexicon) 0/1 (or bool) matrix, e.g. NUS-WIDE's AllTags1k or VireoFood's IngreLabel."""
        m = np.asarray(matrix) > 0
        rows, cols = np.nonzero(m)
        offsets = np.zeros(m.shape[0] + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=m.shape[0]), out=offsets[1:])
        return cls(lexicon, cols.astype(np.int32), offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def words(self, i: int) -> list[str]:
        return [self.lexicon[j] for j in self.flat[self.offsets[i]:self.offsets[i + 1]]]

    def lists(self) -> list[list[str]]:
        return [self.words(i) for i in range(len(self))]

    def subset(self, indices: Sequence[int]) -> "WordTable":
        indices = np.asarray(indices, dtype=np.int64)
        starts, ends = self.offsets[indices], self.offsets[indices + 1]
        lens = ends - starts
        offsets = np.zeros(len(indices) + 1, dtype=np.int64)
        np.cumsum(lens, out=offsets[1:])
        if len(indices) and offsets[-1]:
            gather = np.repeat(starts - offsets[:-1], lens) + np.arange(offsets[-1])
            flat = self.flat[gather]
        else:
            flat = np.zeros(0, dtype=np.int32)
        return WordTable(self.lexicon, flat, offsets)

    def encode(self, vocab: Vocabulary) -> tuple[torch.Tensor, torch.Tensor]:
        """(flat vocabulary ids, offsets) with the words unknown to `vocab` dropped."""
        lex2vocab = np.asarray([vocab.get(w, -1) for w in self.lexicon] or [0], dtype=np.int64)
        ids = lex2vocab[self.flat] if len(self.flat) else np.zeros(0, dtype=np.int64)
        keep = ids >= 0
        row = np.repeat(np.arange(len(self)), np.diff(self.offsets))
        offsets = np.zeros(len(self) + 1, dtype=np.int64)
        np.cumsum(np.bincount(row[keep], minlength=len(self)), out=offsets[1:])
        return torch.from_numpy(ids[keep].copy()), torch.from_numpy(offsets)
