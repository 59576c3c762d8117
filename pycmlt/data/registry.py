"""Dataset registry: build any dataset by name, e.g. from a training config.

    build_dataset("emoji-lt", "train", image_size=32, seed=0)
    build_dataset({"name": "nus-wide", "root": "/data/nus", "mode": "single-label"}, "test")
    build_datasets("synthetic", ("train", "test"))   # the splits share one vocabulary

Options a loader does not take raise TypeError naming them. Common options: image_size, seed,
vocab (share a vocabulary), min_word_count, augment, transform, skip_bad; file-based datasets take
root (a manifest: path or root), resize, mean/std; see each loader for the rest.
"""
from __future__ import annotations

import importlib
import inspect
from dataclasses import asdict, is_dataclass
from typing import Callable

from pycmlt.data.dataset import LTDataset


BUILTIN = {  # name -> (module under pycmlt.data, loader function); imported on first use
    "emoji-lt": ("emoji_lt", "load_emoji_lt"),
    "hanzi-lt": ("hanzi_lt", "load_hanzi_lt"),
    "synthetic": ("synthetic", "load_synthetic"),
    "nus-wide": ("nus_wide", "load_nus_wide"),
    "vireo-food-172": ("vireo_food", "load_vireo_food172"),
    "manifest": ("manifest", "load_manifest"),
}


def _lazy(module: str, function: str) -> Callable[..., LTDataset]:
    def factory(split, **options):
        return getattr(importlib.import_module(f"pycmlt.data.{module}"), function)(split, **options)
    factory.target = (module, function)
    return factory


DATASETS: dict[str, Callable[..., LTDataset]] = {name: _lazy(*target) for name, target in BUILTIN.items()}
ALIASES = {"emoji": "emoji-lt", "emojilt": "emoji-lt", "hanzi": "hanzi-lt", "hanzilt": "hanzi-lt",
           "nuswide": "nus-wide", "nus_wide": "nus-wide", "vireo": "vireo-food-172", "vireofood172": "vireo-food-172",
           "vireo-food172": "vireo-food-172", "vireofood-172": "vireo-food-172"}
SPLITS_OF = {"emoji-lt": ("train", "val", "test"), "hanzi-lt": ("train", "val", "test"),
             "synthetic": ("train", "val", "test"), "nus-wide": ("train", "val", "test"),
             "vireo-food-172": ("train", "val", "test"), "manifest": ("train", "val", "test")}


def register_dataset(name: str, factory: Callable[..., LTDataset], splits=("train", "test")) -> None:
    """Add a dataset: factory(split, **options) -> LTDataset."""
    DATASETS[name] = factory
    SPLITS_OF[name] = tuple(splits)


def canonical_name(name: str) -> str:
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return key


def dataset_options(name: str) -> list[str] | None:
    """Option names the loader of `name` accepts besides the split (None: anything, unchecked)."""
    factory = DATASETS[canonical_name(name)]
    target = getattr(factory, "target", None)
    fn = getattr(importlib.import_module(f"pycmlt.data.{target[0]}"), target[1]) if target else factory
    params = list(inspect.signature(fn).parameters.values())[1:]
    if any(p.kind == p.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params]


def _split_config(name_or_config, options: dict) -> tuple[str, dict]:
    if isinstance(name_or_config, str):
        return canonical_name(name_or_config), dict(options)
    cfg = asdict(name_or_config) if is_dataclass(name_or_config) else dict(name_or_config)
    name = cfg.pop("name", None) or cfg.pop("dataset", None)
    if name is None:
        raise ValueError("a dataset config needs a 'name' (or 'dataset') entry")
    cfg = {k: v for k, v in cfg.items() if v is not None}
    cfg.update(options)
    return canonical_name(name), cfg


def build_dataset(name_or_config, split: str = "train", **options) -> LTDataset:
    """One split of a dataset by name (or a dict / dataclass with a 'name' and options)."""
    name, options = _split_config(name_or_config, options)
    if split not in SPLITS_OF[name]:
        raise ValueError(f"dataset {name!r} has splits {SPLITS_OF[name]}, got {split!r}")
    known = dataset_options(name)
    if known is not None:
        unknown = [k for k in options if k not in known]
        if unknown:
            raise TypeError(f"dataset {name!r} does not take option(s) {', '.join(unknown)}; "
                            f"it takes {', '.join(known)}")
    return DATASETS[name](split, **options)


def build_datasets(name_or_config, splits=("train", "test"), **options) -> dict[str, LTDataset]:
    """Several splits sharing the training split's vocabulary."""
    name, options = _split_config(name_or_config, options)
    out: dict[str, LTDataset] = {}
    vocab = options.pop("vocab", None)
    for s in splits:
        ds = build_dataset(name, s, vocab=vocab, **options)
        vocab = ds.vocab
        out[s] = ds
    return out
