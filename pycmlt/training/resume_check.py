"""--resume continues the run a folder describes, never a different one: the new config is compared
with the stored config.json before anything is written or loaded. Keys that only say where or how
verbosely the run executes may differ; any other difference is refused with the keys named, unless
the caller allows those keys explicitly (e.g. more epochs). Keys that change the model's shape or
the data (method, backbone, dataset, ...) cannot be allowed: the checkpoint cannot be loaded into
the new model, so the run must start in a new folder."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Iterable

from pycmlt.errors import ConfigMismatchError
from pycmlt.training.config import RULES, TrainConfig

# May differ on resume without being allowed: where the run executes and what it prints.
FREE_ON_RESUME = frozenset({"out_dir", "device", "num_workers", "progress", "tensorboard", "eval_every",
                            "compile"})
# Never allowed: the checkpoint holds a model (or data statistics) of another shape.
FIXED_ON_RESUME = frozenset({"dataset", "data_root", "data_options", "data_seed", "image_size", "method",
                             "cls_loss", "backbone", "word_dim", "word_vectors", "use_align", "use_infer", "use_fuse",
                             "fusion", "semantic_head", "text_anchors", "text_pooling", "classifier", "stage1",
                             "learn_cosine_scale"})


def parse_allowed_keys(keys: Iterable[str] | str | None) -> frozenset[str]:
    """The keys a resume may change: names of TrainConfig fields ('epochs,lr' or ['epochs', 'lr'])."""
    if keys is None:
        return frozenset()
    if isinstance(keys, str):
        keys = [keys]
    names = {k.strip().replace("-", "_") for item in keys for k in str(item).split(",") if k.strip()}
    unknown = sorted(names - set(RULES))
    if unknown:
        raise ValueError(f"allow_config_change: unknown config keys {unknown}; known keys: {sorted(RULES)}")
    fixed = sorted(names & FIXED_ON_RESUME)
    if fixed:
        raise ValueError(f"allow_config_change: {fixed} cannot change on resume (the checkpoint's model or data "
                         "would not match); start a new run in another out_dir")
    return frozenset(names)


def stored_config(out_dir: Path, checkpoint_state: dict | None = None) -> dict | None:
    """The config a run folder was started with: config.json, else the checkpoint's copy."""
    path = Path(out_dir) / "config.json"
    if path.is_file():
        try:
            data = json.loads(path.read_text())
        except ValueError as exc:
            raise ValueError(f"{path} is not valid JSON ({exc}); cannot check the resumed config") from exc
        if not isinstance(data, dict):
            raise ValueError(f"{path} does not hold a config (a JSON object)")
        return data
    if checkpoint_state is not None:
        return checkpoint_state.get("config")
    return None


def check_resume_config(stored: dict, config: TrainConfig, allowed: frozenset[str] = frozenset()) -> None:
    """ConfigMismatchError naming every key where `config` differs from `stored`, except the free
    and the allowed ones."""
    new = json.loads(json.dumps(config.to_dict()))  # as config.json stores it (tuples become lists)
    # A key the stored file lacks (written by an older version) had its default; unknown stored keys are ignored.
    defaults = json.loads(json.dumps(_defaults()))
    differing = sorted(k for k in new if k not in FREE_ON_RESUME and stored.get(k, defaults[k]) != new[k])
    fixed = [k for k in differing if k in FIXED_ON_RESUME]
    refused = [k for k in differing if k not in allowed]
    if not refused:
        return
    changes = "; ".join(f"{k}: {stored.get(k, defaults[k])!r} -> {new[k]!r}" for k in refused)
    if fixed:
        raise ConfigMismatchError(f"cannot resume {config.out_dir} with a different {', '.join(fixed)} ({changes}): "
                                  "its checkpoint belongs to another model or data; start a new run in another "
                                  "out_dir")
    raise ConfigMismatchError(f"cannot resume {config.out_dir} with a different config ({changes}); resume with "
                              f"the stored settings, or allow the change explicitly with --allow-config-change "
                              f"{','.join(refused)} (train(..., allow_config_change=[...]))")


def _defaults() -> dict:
    return {f.name: (f.default if f.default is not dataclasses.MISSING else f.default_factory())
            for f in dataclasses.fields(TrainConfig)}
