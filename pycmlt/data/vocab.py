"""The descriptional-word vocabulary: word <-> id, built from the words of the training split.

Words are plain strings (an emoji keyword token, a NUS-WIDE tag, a VireoFood ingredient name, a
manifest word). Ids are 0..len-1. `counts[i]` is the number of *training images* that carry word i
(document frequency), which the class-balanced word loss of CMI uses.

Unknown words (met at val/test time, or below `min_count`) are dropped by `encode` — consistently:
the same word is always dropped, a sample may end up with no word ids, and the raw words of a sample
stay available from its dataset (`dataset.words(i)`) for reporting.
"""
from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch


class Vocabulary(Sequence):
    """An ordered list of distinct words (a `Sequence[str]`) with their training frequencies."""

    def __init__(self, words: Iterable[str], counts: Iterable[int] | None = None):
        self._words = [str(w) for w in words]
        self._index: dict[str, int] = {}
        for i, w in enumerate(self._words):
            if w in self._index:
                raise ValueError(f"duplicate word {w!r} in vocabulary")
            self._index[w] = i
        counts = [0] * len(self._words) if counts is None else [int(c) for c in counts]
        if len(counts) != len(self._words):
            raise ValueError(f"counts has {len(counts)} entries for {len(self._words)} words")
        self.counts = torch.tensor(counts, dtype=torch.long)

    @classmethod
    def build(cls, word_lists: Iterable[Iterable[str]], *, min_count: int = 1, max_size: int | None = None,
              order: Sequence[str] | None = None) -> "Vocabulary":
        """Vocabulary of the words in `word_lists` (one list per training image) seen in at least
        `min_count` images. Ordered by decreasing frequency, ties alphabetically, unless `order`
        (e.g. an official tag list) is given, in which case that order is kept. `max_size` keeps
        the most frequent words."""
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        freq: Counter[str] = Counter()
        for words in word_lists:
            freq.update(set(words))
        kept = [w for w, c in freq.items() if c >= min_count]
        if max_size is not None and len(kept) > max_size:
            kept = sorted(kept, key=lambda w: (-freq[w], w))[:max_size]
        if order is not None:
            rank = {w: i for i, w in enumerate(order)}
            missing = [w for w in kept if w not in rank]
            if missing:
                raise ValueError(f"words not in the given order list: {missing[:5]}")
            kept = sorted(kept, key=rank.__getitem__)
        else:
            kept = sorted(kept, key=lambda w: (-freq[w], w))
        return cls(kept, [freq[w] for w in kept])

    # -- sequence protocol
    def __len__(self) -> int:
        return len(self._words)

    def __getitem__(self, i):
        return self._words[i]

    def __contains__(self, word) -> bool:
        return word in self._index

    def __iter__(self):
        return iter(self._words)

    def __eq__(self, other) -> bool:
        if isinstance(other, Vocabulary):
            return self._words == other._words
        if isinstance(other, (list, tuple)):
            return self._words == list(other)
        return NotImplemented

    def __repr__(self) -> str:
        head = ", ".join(self._words[:5])
        return f"Vocabulary({len(self)} words: {head}{', ...' if len(self) > 5 else ''})"

    # -- lookups
    def index(self, word: str) -> int:  # type: ignore[override]
        """Id of `word`; KeyError when it is not in the vocabulary."""
        try:
            return self._index[word]
        except KeyError:
            raise KeyError(f"word {word!r} is not in the vocabulary") from None

    def get(self, word: str, default: int = -1) -> int:
        return self._index.get(word, default)

    def encode(self, words: Iterable[str]) -> torch.Tensor:
        """Long tensor of the ids of `words` in order, duplicates removed, unknown words dropped."""
        ids, seen = [], set()
        for w in words:
            i = self._index.get(w)
            if i is not None and i not in seen:
                seen.add(i)
                ids.append(i)
        return torch.tensor(ids, dtype=torch.long)

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self._words[int(i)] for i in ids if int(i) >= 0]

    # -- persistence (saved with checkpoints and the word index)
    def to_dict(self) -> dict:
        return {"words": list(self._words), "counts": self.counts.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "Vocabulary":
        return cls(d["words"], d.get("counts"))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "Vocabulary":
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
