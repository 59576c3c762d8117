"""pycmlt.train(config): the orchestration of one run. It takes the run folder's lock, checks a
resumed config, builds the datasets, runs the stage the recipe calls for (stage_one.py, or
stage_two.py for a method that builds on a stage-one model), picks the weights to test (the last
epoch, or the best on val), saves model.pt and writes the test metrics. Every stage checkpoints each
epoch atomically, so a killed run resumes where it stopped and ends with the same metrics."""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from pycmlt.atomic_write import atomic_write_json
from pycmlt.data import build_dataset
from pycmlt.evaluation.predictions import PREDICTIONS
from pycmlt.ops import use_backend
from pycmlt.training import ddp as ddp_setup
from pycmlt.training.checkpoint import CHECKPOINT, MODEL, save_model
from pycmlt.training.config import TrainConfig
from pycmlt.training.metrics_report import format_metrics_table, write_metrics
from pycmlt.training.model_evaluation import data_report, evaluate_model
from pycmlt.training.recipes import builds_on_stage_one, explicit_cls_loss, saved_cls_loss
from pycmlt.training.resume_check import check_resume_config, parse_allowed_keys, stored_config
from pycmlt.training.run_checks import check_run_data
from pycmlt.training.run_lock import RunLock
from pycmlt.training.run_state import RunData, RunState, StageResult
from pycmlt.training.stage_one import train_stage_one
from pycmlt.training.stage_two import train_stage_two

VAL_METRICS = "val_metrics.json"


@dataclass
class TrainResult:
    out_dir: Path
    metrics: dict
    history: list[dict] = field(default_factory=list)

    @property
    def model_path(self) -> Path:
        return self.out_dir / MODEL


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train(config: TrainConfig, *, resume: bool = False, allow_config_change=None,
          evaluate_test: bool = True) -> TrainResult:
    """Trains `config.method` on `config.dataset` and evaluates it; see TrainConfig for the options.

    The run holds a lock on config.out_dir until it returns (a second run into the folder fails).
    resume=True continues the folder's run; its config must match the stored config.json except for
    the keys in allow_config_change (e.g. ["epochs"]). A NaN/infinite loss, gradient or parameter
    stops the run with TrainingDivergedError, keeping the last good checkpoint.
    evaluate_test=False (pycmlt tune) never builds the test split: the run ends with the val metrics
    of its selected epoch in val_metrics.json (needs select_on="val")."""
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if not evaluate_test and config.select_on != "val":
        raise ValueError("evaluate_test=False needs select_on='val': the run is measured on val only")
    allowed = parse_allowed_keys(allow_config_change)
    ddp = ddp_setup.init_from_env(config.device)
    lock = RunLock(config.out_dir).acquire() if ddp.is_main else None
    try:
        return _locked_train(config, resume, allowed, ddp, evaluate_test)
    finally:
        if lock is not None:
            lock.release()


def _locked_train(config: TrainConfig, resume: bool, allowed: frozenset, ddp, evaluate_test: bool) -> TrainResult:
    out_dir = Path(config.out_dir)
    checkpoint_path = out_dir / CHECKPOINT
    if ddp.is_main and checkpoint_path.exists() and not resume:
        raise FileExistsError(f"{out_dir} already holds a run (checkpoint.pt); pass resume=True (--resume) "
                              "to continue it, or choose another out_dir")

    seed_everything(config.seed)
    data = _run_data(config, evaluate_test)
    config = explicit_cls_loss(config, data.multi_label)  # the run's files name the loss that trains it
    if ddp.is_main:
        stored = stored_config(out_dir) if resume else None
        if stored is not None:  # before anything in the folder changes
            check_resume_config(saved_cls_loss(stored, data.multi_label), config, allowed)
        config.save(out_dir / "config.json")
    ddp.barrier()
    run = RunState(config, data, ddp.device if ddp.enabled else resolve_device(config.device), ddp,
                   checkpoint_path, resume)
    with use_backend(config.backend):
        stage = train_stage_two(run) if builds_on_stage_one(config) else train_stage_one(run)
        metrics = _finish(run, stage, evaluate_test) if ddp.is_main else {}
    ddp.barrier()
    ddp.shutdown()
    return TrainResult(out_dir, metrics, stage.history)


def _run_data(config: TrainConfig, evaluate_test: bool) -> RunData:
    splits = ("train", *(("val",) if config.select_on == "val" else ()), *(("test",) if evaluate_test else ()))
    sets = dict(zip(splits, load_datasets(config, splits)))
    check_run_data(config, sets)
    train_set = sets["train"]
    return RunData(train_set, sets.get("val"), sets.get("test"),
                   torch.as_tensor(train_set.class_counts, dtype=torch.float32), list(train_set.vocab),
                   bool(train_set.multi_label))


def _finish(run: RunState, stage: StageResult, evaluate_test: bool) -> dict:
    """Rank 0: loads the selected epoch's weights, saves model.pt and writes the metrics files."""
    config, data, out_dir = run.config, run.data, Path(run.config.out_dir)
    model, selector = stage.model, stage.selector
    selection = {}
    if data.val is not None and selector is not None and selector.epoch is not None:
        selection = {"selected_epoch": selector.load_best(model), "val": selector.scores}
    elif data.val is not None:  # a second stage that trains no epochs: nothing to choose between
        selection = {"selected_epoch": None, "val": run.score(model, data.val)}
    save_model(model, out_dir / MODEL, config, data.train)
    if not evaluate_test:
        metrics = {"method": config.method, "seed": config.seed, **selection}
        atomic_write_json(out_dir / VAL_METRICS, metrics)
        return metrics
    metrics = evaluate_model(model, config, data.test, data.class_counts, data.vocab, data.multi_label, run.device,
                             predictions_path=out_dir / PREDICTIONS)
    metrics.update(selection)
    metrics["data_report"] = {"train": data_report(data.train), "test": data_report(data.test)}
    write_metrics(out_dir, config, metrics, data.train.classes, data.class_counts)
    if config.progress:
        print(format_metrics_table({config.method: metrics}))
    return metrics


def load_datasets(config: TrainConfig, splits=("train", "test")):
    """The run's datasets; the test split shares the training vocabulary. Augmentation is applied
    batch-wise in the training loop (reproducible on resume), so the datasets' own is off."""
    options = dict(image_size=config.image_size, seed=config.data_seed, augment=False, **config.data_options)
    if config.data_root is not None:
        options["root"] = config.data_root
    if config.skip_bad:
        options["skip_bad"] = True
    train_set = build_dataset(config.dataset, "train", **options)
    return (train_set, *(build_dataset(config.dataset, s, vocab=train_set.vocab, **options) for s in splits[1:]))
