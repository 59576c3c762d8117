"""Everything a run writes to and reads back from disk as torch files: the per-epoch training
checkpoint (checkpoint.pt, from which a killed run resumes), the finished model (model.pt) and the
model IO around it. Every file is written with pycmlt.atomic_write (temporary file, fsync, rename,
folder fsync), so a run killed at any moment leaves the last complete file behind."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from pycmlt.atomic_write import atomic_path
from pycmlt.errors import ConfigMismatchError
from pycmlt.models import CMLTNet, CMLTNetConfig
from pycmlt.training.config import TrainConfig
from pycmlt.training.recipes import saved_cls_loss

FORMAT = 1
CHECKPOINT = "checkpoint.pt"
MODEL = "model.pt"


def atomic_save(obj, path: str | Path) -> Path:
    """torch.save(obj) to `path`, atomically and durably."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def load(path: str | Path) -> dict:
    """Loads a pycmlt checkpoint or model file (our own files: full unpickling is allowed)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise ValueError(f"{path} is not a readable pycmlt checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} is not a pycmlt checkpoint of format {FORMAT}")
    return state


def rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


# ----------------------------------------------------------------------------------- training state

def save_training_state(path: Path, epoch: int, trainer, history: list[dict], config) -> None:
    """The state after `epoch` epochs of a stage (stage one or cRT): its model, objective, optimizer,
    fp16 loss scale, the random state and the history; `config` is the run's TrainConfig."""
    atomic_save({"format": FORMAT, "epoch": epoch, "model": trainer.model.state_dict(),
                 "objective": trainer.objective.state_dict(), "optimizer": trainer.optimizer.state_dict(),
                 "grad_scaler": trainer.amp.state_dict(),
                 "rng": rng_state(), "history": history, "config": config.to_dict()}, path)


def restore_training_state(path: Path, trainer) -> tuple[int, list[dict]]:
    """Loads save_training_state's file into `trainer`; returns (epochs done, history).
    ConfigMismatchError when the file holds a model of another shape."""
    state = load(path)
    try:
        trainer.model.load_state_dict(state["model"])
        trainer.objective.load_state_dict(state["objective"])
        trainer.optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigMismatchError(f"{path} does not fit the model of this config ({first_line}); it was written by "
                                  "a run with other settings: start a new run in another out_dir") from None
    trainer.amp.load_state_dict(state.get("grad_scaler"))
    set_rng_state(state["rng"])
    return state["epoch"], state["history"]


# ----------------------------------------------------------------------------------- finished models

def save_model(model: CMLTNet, path: Path, config, train_set) -> None:
    """model.pt: the weights with what using them needs (classes, vocabulary, class counts, the
    training config and how images were prepared)."""
    atomic_save({"format": FORMAT, "model_config": model.to_dict(), "state_dict": model.state_dict(),
                 "classes": list(train_set.classes), "vocab": list(train_set.vocab),
                 "class_counts": torch.as_tensor(train_set.class_counts).tolist(),
                 "multi_label": bool(train_set.multi_label), "train_config": config.to_dict(),
                 "image": {"size": train_set.image_size, "mean": list(train_set.mean),
                           "std": list(train_set.std), "resize": getattr(train_set, "resize", "crop"),
                           "background": list(getattr(train_set, "background", (255, 255, 255)))}}, path)


def load_model(path: str | Path, device: torch.device | str = "cpu") -> tuple[CMLTNet, dict]:
    """A trained model and its metadata (classes, vocab, class counts, train config) from model.pt."""
    path = Path(path)
    if path.is_dir():
        path = path / MODEL
    state = load(path)
    if "model_config" not in state:
        raise ValueError(f"{path} is a training checkpoint, not a finished model: word inference and evaluation "
                         f"need the run's {MODEL}, written when training ends; give the run folder of a finished "
                         "run (or finish this one with --resume)")
    model = CMLTNet(CMLTNetConfig(**state["model_config"]))
    model.load_state_dict(state["state_dict"])
    model.vocab = list(state["vocab"])
    model.classes = list(state["classes"])
    return model.to(device).eval(), state


def saved_train_config(meta: dict) -> TrainConfig:
    """The TrainConfig a saved model trained with (load_model's metadata), its cls_loss as trained even
    when an earlier version saved the default as null (recipes.saved_cls_loss)."""
    return TrainConfig.from_dict(saved_cls_loss(meta["train_config"], bool(meta.get("multi_label"))))


def load_run(run_dir: str | Path, device: torch.device | str = "cpu", *,
             data_root: str | None = None) -> tuple[CMLTNet, dict, TrainConfig]:
    """A trained run folder: its model and metadata (load_model) and the TrainConfig it was trained
    with (data_root replaced when given), from which load_datasets rebuilds its data."""
    model, meta = load_model(run_dir, device)
    config = saved_train_config(meta)
    if data_root:
        config = config.replace(data_root=data_root)
    return model, meta, config
