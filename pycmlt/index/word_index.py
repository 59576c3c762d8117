"""WordIndex: nearest words of vectors in a word-embedding space (docs/evaluation.md)."""
from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from pycmlt.index import _faiss, _persist
from pycmlt.index._arrays import (
    NORM_EPS,
    as_matrix,
    first_nonfinite_row,
    host_float32,
    normalize_rows_,
    num_rows,
    to_caller,
)

KINDS = ("flat", "ivf")
DEFAULT_BATCH = 16384  # queries per FAISS call: bounds the float32 host copy of the queries


class ZeroVectorWarning(UserWarning):
    """Some word vectors are zero: after normalisation they score 0 against every query."""


class WordIndex:
    """Inner-product nearest-word search over a vocabulary and its word vectors, backed by FAISS.

    Args:
        words: the vocabulary, one distinct non-empty string per row of `vectors` (word id = position).
        vectors: [V, D] word vectors: a torch tensor (any device, float16/bfloat16/float32/float64,
            detached here) or a NumPy array / nested sequence of floats. Stored as float32.
        normalize: L2-normalise the word vectors and every query (x / max(||x||, 1e-12)), so scores
            are cosine similarities. With False, scores are raw inner products.
        kind: "flat" — exact search (FAISS IndexFlatIP: the same top-k as brute force, ties aside);
            "ivf" — approximate search (IndexIVFFlat: k-means into `nlist` lists, `nprobe` of them
            scanned per query), faster on large vocabularies.
        nlist: IVF lists; default about 4 * sqrt(V), at most V / 39 (``default_nlist``).
        nprobe: IVF lists probed per query; default ceil(nlist / 4) (``default_nprobe``). On 100k
            isotropic random words of dimension 32 this gives recall@10 = 0.98 against flat; isotropic
            random vectors are the worst case for IVF, and in higher dimensions they need more probes
            (0.89 at D=64, 0.57 at D=384). Clustered vectors such as real word embeddings need far
            fewer. ``tune_nprobe(sample_queries)`` picks the smallest nprobe reaching a target recall
            for your own queries; ``recall_against_flat`` measures it.
        device: "auto" (a GPU when the installed FAISS has GPU support and sees one, else the CPU),
            "cpu", "cuda" or "cuda:N" (an error if FAISS has no GPU support). A GPU index also keeps
            its CPU copy, which serves requests beyond the GPU limits (k or nprobe > 2048) and save().

    Defined behaviour: duplicate words, an empty vocabulary, empty-string words, a vector count that
    differs from the word count, NaN/inf vectors (the error names the word) and integer or boolean
    vectors are errors. Zero vectors are kept and, with normalize=True, stay zero (score 0 against
    every query; a ZeroVectorWarning names them). Queries follow the same rules (NaN names the row,
    a wrong dimension says both). k larger than the vocabulary is clamped to V: results then have
    V columns. IVF search can come back short when the probed lists hold fewer than k words; missing
    entries have id -1 and score -inf (words_for skips them).
    """

    def __init__(self, words: Sequence[str], vectors, *, normalize: bool = True, kind: str = "flat",
                 nlist: int | None = None, nprobe: int | None = None, device="auto"):
        words = _check_words(words)
        if not isinstance(normalize, bool):
            raise TypeError(f"normalize must be True or False, got {normalize!r}")
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        vectors, _ = as_matrix("vectors", vectors)
        if len(vectors.shape) != 2:
            raise ValueError(f"vectors must have shape [V, D] (one row per word), got {tuple(vectors.shape)}")
        if vectors.shape[0] != len(words):
            raise ValueError(f"got {len(words)} words but {vectors.shape[0]} vectors: need one vector per word")
        if vectors.shape[1] == 0:
            raise ValueError("vectors have dimension 0")
        x = host_float32(vectors, copy=True)  # never modify the caller's array
        bad = first_nonfinite_row(x)
        if bad is not None:
            raise ValueError(f"the vector of word {words[bad]!r} (row {bad}) contains NaN or inf")
        if normalize:
            norms = normalize_rows_(x)
            zero = np.flatnonzero(norms <= NORM_EPS)
            if zero.size:
                named = ", ".join(repr(words[i]) for i in zero[:5]) + (", ..." if zero.size > 5 else "")
                warnings.warn(f"{zero.size} word vector(s) are zero ({named}); they score 0 against every query",
                              ZeroVectorWarning, stacklevel=2)
        if kind == "ivf":
            nlist = _check_count("nlist", nlist, high=len(words)) if nlist is not None else _faiss.default_nlist(len(words))
            nprobe = _check_count("nprobe", nprobe, high=nlist) if nprobe is not None else _faiss.default_nprobe(nlist)
        elif nlist is not None or nprobe is not None:
            raise ValueError("nlist and nprobe apply to kind='ivf' only")
        gpu = _faiss.resolve_device(device)
        cpu_index = _faiss.build_cpu_index(kind, x, nlist)
        del x
        self._setup(words, cpu_index, kind=kind, normalize=normalize, nlist=nlist, nprobe=nprobe, gpu=gpu)

    def _setup(self, words, cpu_index, *, kind, normalize, nlist, nprobe, gpu):
        self._words = tuple(words)
        self._ids = {w: i for i, w in enumerate(self._words)}
        self._kind, self._normalize, self._nlist = kind, normalize, nlist
        self._cpu_index = cpu_index
        self._gpu = gpu
        self._gpu_index = _faiss.to_gpu(cpu_index, gpu) if gpu is not None else None
        self._nprobe = None
        if kind == "ivf":
            self.nprobe = nprobe

    # ------------------------------------------------------------------ description

    @property
    def words(self) -> tuple[str, ...]:
        """The vocabulary in id order."""
        return self._words

    @property
    def dim(self) -> int:
        return self._cpu_index.d

    @property
    def kind(self) -> str:
        return self._kind

    @property
    def normalize(self) -> bool:
        return self._normalize

    @property
    def nlist(self) -> int | None:
        return self._nlist

    @property
    def device(self) -> str:
        """'cpu' or 'cuda:N': where FAISS searches."""
        return "cpu" if self._gpu is None else f"cuda:{self._gpu}"

    @property
    def nprobe(self) -> int | None:
        """IVF lists probed per query (None for a flat index); assignable."""
        return self._nprobe

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        if self._kind != "ivf":
            raise ValueError("nprobe applies to kind='ivf' only")
        value = _check_count("nprobe", value, high=self._nlist)
        _faiss.set_nprobe(self._cpu_index, value)
        if self._gpu_index is not None and value <= _faiss.GPU_MAX_NPROBE:
            _faiss.set_nprobe(self._gpu_index, value)
        self._nprobe = value

    @property
    def vectors(self) -> np.ndarray:
        """A float32 [V, D] copy of the stored (normalised, when normalize=True) word vectors."""
        return _faiss.stored_vectors(self._cpu_index)

    def __len__(self) -> int:
        return len(self._words)

    def __contains__(self, word) -> bool:
        return word in self._ids

    def id_of(self, word: str) -> int:
        try:
            return self._ids[word]
        except KeyError:
            raise KeyError(f"{word!r} is not in the vocabulary of this WordIndex ({len(self)} words)") from None

    def ids_of(self, words: Iterable[str]) -> list[int]:
        return [self.id_of(w) for w in words]

    def __repr__(self) -> str:
        extra = f", nlist={self._nlist}, nprobe={self._nprobe}" if self._kind == "ivf" else ""
        return (f"WordIndex(kind={self._kind!r}, words={len(self)}, dim={self.dim}{extra}, "
                f"normalize={self._normalize}, device={self.device!r})")

    # ------------------------------------------------------------------ search

    def search(self, queries, k: int, *, batch_size: int = DEFAULT_BATCH):
        """Top-k words of every query: (scores, ids), best first.

        queries: [Q, D] or [D]; a torch tensor (any device; float16/bfloat16/float32/float64) or a
        NumPy array (or nested sequence) of floats. Results come back as the same kind: for a torch
        tensor, torch tensors on the queries' device (scores float32, ids int64); otherwise NumPy
        arrays (float32, int64). Shapes [Q, k'] ([k'] for a [D] query), k' = min(k, V). Any Q,
        including 0; FAISS is called on `batch_size` queries at a time.
        """
        k = self._check_k(k)
        queries, kind = as_matrix("queries", queries, dim=self.dim)
        batch_size = _check_count("batch_size", batch_size)
        n = num_rows(queries)
        scores = np.empty((n, k), dtype=np.float32)
        ids = np.empty((n, k), dtype=np.int64)
        index = self._index_for(k)
        for start in range(0, n, batch_size):
            rows = slice(start, min(start + batch_size, n))
            # normalisation works in place: then x must be a copy, never the caller's memory
            x = host_float32(queries, None if kind.one_query else rows, copy=self._normalize)
            bad = first_nonfinite_row(x)
            if bad is not None:
                raise ValueError(f"queries row {start + bad} contains NaN or inf")
            if self._normalize:
                normalize_rows_(x)
            scores[rows], ids[rows] = index.search(x, k)
        missing = ids < 0
        if missing.any():
            scores[missing] = -np.inf
            ids[missing] = -1
        return to_caller(scores, ids, kind)

    def words_for(self, queries, k: int, *, batch_size: int = DEFAULT_BATCH) -> list[list[str]]:
        """The top-k words of each query, best first: one list per query (also for a [D] query)."""
        return [[w for w, _ in row] for row in self.words_with_scores(queries, k, batch_size=batch_size)]

    def words_with_scores(self, queries, k: int, *, batch_size: int = DEFAULT_BATCH) -> list[list[tuple[str, float]]]:
        """[(word, score), ...] best first, one list per query (also for a [D] query)."""
        scores, ids = self.search(queries, k, batch_size=batch_size)
        scores, ids = _host(scores), _host(ids)
        if ids.ndim == 1:
            scores, ids = scores[None], ids[None]
        words = self._words
        return [[(words[i], float(s)) for s, i in zip(srow, irow) if i >= 0] for srow, irow in zip(scores, ids)]

    def _check_k(self, k) -> int:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise TypeError(f"k must be an int, got {type(k).__name__}")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        return min(int(k), len(self._words))

    def _index_for(self, k: int):
        gpu = self._gpu_index
        if gpu is None or k > _faiss.GPU_MAX_K or (self._kind == "ivf" and self._nprobe > _faiss.GPU_MAX_NPROBE):
            return self._cpu_index
        return gpu

    # ------------------------------------------------------------------ IVF quality

    def recall_against_flat(self, queries, k: int = 10) -> float:
        """Mean fraction of the exact top-k (brute-force inner product over the stored vectors) that
        this index returns for `queries`. 1.0 for a flat index up to ties."""
        k = self._check_k(k)
        exact = self._exact_ids(queries, k)
        return _recall(self.search(_host_queries(queries, self.dim), k)[1], exact)

    def tune_nprobe(self, queries, k: int = 10, target_recall: float = 0.95) -> int:
        """Set nprobe to the smallest value whose recall@k against flat on `queries` (a sample of the
        queries this index will answer) is >= target_recall; returns it (nlist if none reaches it)."""
        if self._kind != "ivf":
            raise ValueError("tune_nprobe applies to kind='ivf' only")
        if not 0.0 < float(target_recall) <= 1.0:
            raise ValueError(f"target_recall must be in (0, 1], got {target_recall}")
        k = self._check_k(k)
        x = _host_queries(queries, self.dim)
        if x.shape[0] == 0:
            raise ValueError("tune_nprobe needs at least one query")
        exact = self._exact_ids(x, k)
        low, high = 1, self._nlist  # recall is non-decreasing in nprobe: more lists, more candidates
        while low < high:
            mid = (low + high) // 2
            self.nprobe = mid
            if _recall(self.search(x, k)[1], exact) >= target_recall:
                high = mid
            else:
                low = mid + 1
        self.nprobe = low
        return low

    def _exact_ids(self, queries, k: int) -> np.ndarray:
        x = _host_queries(queries, self.dim)
        bad = first_nonfinite_row(x)
        if bad is not None:
            raise ValueError(f"queries row {bad} contains NaN or inf")
        if self._normalize:
            normalize_rows_(x)
        f = _faiss.faiss()
        return f.knn(x, self.vectors, k, metric=f.METRIC_INNER_PRODUCT)[1]

    # ------------------------------------------------------------------ persistence

    def save(self, path) -> Path:
        """Write the index, the vocabulary and metadata (format version, checksums) into the directory
        `path` (created; an earlier WordIndex there is replaced; other non-empty directories are refused)."""
        path = Path(path)
        meta = {"kind": self._kind, "dim": self.dim, "num_words": len(self), "normalize": self._normalize,
                "nlist": self._nlist, "nprobe": self._nprobe, "metric": "inner_product",
                "created_with": {"pycmlt": _pycmlt_version(), "faiss": _faiss.faiss_info()["faiss_version"]}}
        _persist.write(path, self._cpu_index, list(self._words), meta)
        return path

    @classmethod
    def load(cls, path, *, device="auto") -> "WordIndex":
        """Read a directory written by save(); IndexFormatError when it is missing parts, corrupt,
        edited, or written by a newer format."""
        meta, words, cpu_index = _persist.read(Path(path))
        if len(set(words)) != len(words):
            raise _persist.IndexFormatError(f"{path}: the vocabulary lists a word twice")
        self = cls.__new__(cls)
        nprobe = meta["nprobe"]
        if meta["kind"] == "ivf" and (meta["nlist"] != cpu_index.nlist or not 1 <= (nprobe or 0) <= cpu_index.nlist):
            raise _persist.IndexFormatError(f"{path}: nlist/nprobe in the metadata do not match the FAISS index")
        self._setup(words, cpu_index, kind=meta["kind"], normalize=meta["normalize"], nlist=meta["nlist"],
                    nprobe=nprobe, gpu=_faiss.resolve_device(device))
        return self


# ---------------------------------------------------------------------- helpers


def _check_words(words) -> list[str]:
    if isinstance(words, (str, bytes)):
        raise TypeError("words must be a sequence of strings, got a single string")
    try:
        words = list(words)
    except TypeError:
        raise TypeError(f"words must be a sequence of strings, got {type(words).__name__}") from None
    if not words:
        raise ValueError("the vocabulary is empty: WordIndex needs at least one word")
    seen: dict[str, int] = {}
    for i, w in enumerate(words):
        if not isinstance(w, str):
            raise TypeError(f"words[{i}] must be a str, got {type(w).__name__} ({w!r})")
        if not w:
            raise ValueError(f"words[{i}] is an empty string")
        if w in seen:
            raise ValueError(f"duplicate word {w!r} at positions {seen[w]} and {i}: a vocabulary lists each word once")
        seen[w] = i
    return words


def _check_count(name: str, value, *, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1 or (high is not None and value > high):
        limit = f" and <= {high}" if high is not None else ""
        raise ValueError(f"{name} must be >= 1{limit}, got {value}")
    return int(value)


def _host(value) -> np.ndarray:
    return value.cpu().numpy() if hasattr(value, "cpu") else value


def _host_queries(queries, dim: int) -> np.ndarray:
    queries, _ = as_matrix("queries", queries, dim=dim)
    return host_float32(queries, copy=True)


def _recall(found, exact: np.ndarray) -> float:
    found = _host(found)
    if exact.size == 0:
        return math.nan
    hits = sum(len(set(f[f >= 0].tolist()) & set(e[e >= 0].tolist())) for f, e in zip(found, exact))
    return hits / exact.size


def _pycmlt_version() -> str:
    from pycmlt._version import __version__

    return __version__
