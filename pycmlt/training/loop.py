"""pycmlt.train(config): trains and evaluates one method on one dataset, checkpointing every epoch
(atomically) so that a killed run resumes where it stopped and ends with the same metrics."""
from __future__ import annotations

import dataclasses
import json
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler

import pycmlt
from pycmlt.data.transforms import augment_batch
from pycmlt.errors import ConfigMismatchError
from pycmlt.eval.predictions import PREDICTIONS, save_predictions
from pycmlt.models import CMLTNet, CMLTNetConfig, class_word_profile, tau_normalize_
from pycmlt.models.heads import build_classifier
from pycmlt.training import checkpoint as ckpt
from pycmlt.training import distributed as dist_utils
from pycmlt.training.config import TrainConfig
from pycmlt.training.divergence import check_parameters, check_step, step_health
from pycmlt.training.evaluate import classification_metrics, predict, word_inference_metrics
from pycmlt.training.methods import cosine_lr, cosine_scale, evaluation_logits, model_config
from pycmlt.training.objective import CMLTNetObjective
from pycmlt.training.precision import MixedPrecision, compiled
from pycmlt.training.progress import StepProgress
from pycmlt.training.report import format_metrics_table, write_metrics
from pycmlt.training.resume_check import check_resume_config, parse_allowed_keys, stored_config
from pycmlt.training.run_checks import check_run_data
from pycmlt.training.run_lock import RunLock
from pycmlt.training.scalars import ScalarLog
from pycmlt.training.selection import BestEpoch, split_scores
from pycmlt.training.word_weights import word_loss_weights

CHECKPOINT = "checkpoint.pt"
MODEL = "model.pt"
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
    ctx = dist_utils.init_from_env(config.device)
    lock = RunLock(config.out_dir).acquire() if ctx.is_main else None
    try:
        return _locked_train(config, resume, allowed, ctx, evaluate_test)
    finally:
        if lock is not None:
            lock.release()


def _locked_train(config: TrainConfig, resume: bool, allowed: frozenset, ctx, evaluate_test: bool) -> TrainResult:
    from pycmlt.data import collate

    device = ctx.device if ctx.enabled else resolve_device(config.device)
    out_dir = Path(config.out_dir)
    checkpoint_path = out_dir / CHECKPOINT
    if ctx.is_main:
        if checkpoint_path.exists() and not resume:
            raise FileExistsError(f"{out_dir} already holds a run (checkpoint.pt); pass resume=True (--resume) "
                                  "to continue it, or choose another out_dir")
        stored = stored_config(out_dir) if resume else None
        if stored is not None:  # before anything in the folder changes
            check_resume_config(stored, config, allowed)

    seed_everything(config.seed)
    splits = ("train", *(("val",) if config.select_on == "val" else ()), *(("test",) if evaluate_test else ()))
    sets = dict(zip(splits, load_datasets(config, splits)))
    train_set, val_set, test_set = sets["train"], sets.get("val"), sets.get("test")
    check_run_data(config, sets)
    if ctx.is_main:
        config.save(out_dir / "config.json")
    ctx.barrier()
    class_counts = torch.as_tensor(train_set.class_counts, dtype=torch.float32)
    vocab = list(train_set.vocab)
    multi_label = bool(train_set.multi_label)

    with pycmlt.ops.use_backend(config.backend):
        if config.method in ("crt", "tau-norm") or (config.method == "logit-adjust" and config.stage1):
            model, history, selector = _second_stage(config, train_set, val_set, class_counts, multi_label, device,
                                                     ctx, collate, checkpoint_path, resume)
        else:
            model, history, selector = _first_stage(config, train_set, test_set, class_counts, vocab, multi_label,
                                                    device, ctx, collate, checkpoint_path, resume, val_set=val_set)
        metrics = {}
        if ctx.is_main:
            raw = model.module if hasattr(model, "module") else model
            selection = {}
            if val_set is not None and selector is not None and selector.epoch is not None:
                selection = {"selected_epoch": selector.load_best(raw), "val": selector.scores}
            elif val_set is not None:  # a second stage that trains no epochs: nothing to choose between
                selection = {"selected_epoch": None,
                             "val": split_scores(raw, config, val_set, class_counts, multi_label, device, collate)}
            save_model(raw, out_dir / MODEL, config, train_set)
            if evaluate_test:
                metrics = evaluate_model(raw, config, test_set, class_counts, vocab, multi_label, device, collate,
                                         predictions_path=out_dir / PREDICTIONS)
                metrics.update(selection)
                metrics["data_report"] = {"train": _data_report(train_set), "test": _data_report(test_set)}
                write_metrics(out_dir, config, metrics, train_set.classes, class_counts)
                if config.progress:
                    print(format_metrics_table({config.method: metrics}))
            else:
                metrics = {"method": config.method, "seed": config.seed, **selection}
                write_json(out_dir / VAL_METRICS, metrics)
    ctx.barrier()
    ctx.shutdown()
    return TrainResult(out_dir, metrics, history)


def load_datasets(config: TrainConfig, splits=("train", "test")):
    """The run's datasets; the test split shares the training vocabulary. Augmentation is applied
    batch-wise in the training loop (reproducible on resume), so the datasets' own is off."""
    from pycmlt.data import build_dataset

    options = dict(image_size=config.image_size, seed=config.data_seed, augment=False, **config.data_options)
    if config.data_root is not None:
        options["root"] = config.data_root
    if config.skip_bad:
        options["skip_bad"] = True
    train_set = build_dataset(config.dataset, "train", **options)
    return (train_set, *(build_dataset(config.dataset, s, vocab=train_set.vocab, **options) for s in splits[1:]))


def epoch_generator(seed: int, epoch: int, stream: int = 0) -> torch.Generator:
    """Random stream of one epoch, derived from (seed, epoch) only: a resumed run draws the same."""
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch * 7919 + stream) % (2**63))


def _sampler(config: TrainConfig, train_set, ctx, class_balanced: bool):
    if class_balanced:
        from pycmlt.data import ClassBalancedSampler

        return ClassBalancedSampler(train_set.targets, seed=config.seed, num_replicas=ctx.world_size, rank=ctx.rank)
    return DistributedSampler(train_set, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=config.seed)


# ----------------------------------------------------------------------------------------- stage one


def _word_vectors(config: TrainConfig, vocab: list[str]) -> torch.Tensor | None:
    if config.word_vectors == "none" or config.method != "cmltnet":
        return None
    from pycmlt.text import pretrained_word_vectors

    # Unit-norm rows, like the table's own initialisation (std e^-1/2 per coordinate); PCA to word_dim.
    return pretrained_word_vectors(list(vocab), source=config.word_vectors, dim=config.word_dim)


def _first_stage(config, train_set, test_set, class_counts, vocab, multi_label, device, ctx, collate, checkpoint_path,
                 resume, val_set=None):
    mcfg = model_config(config, len(train_set.classes), len(vocab))
    torch.manual_seed(config.seed)
    class_words = (class_word_profile(train_set.word_id_lists(), train_set.targets, mcfg.num_classes, len(vocab))
                   if mcfg.semantic_head else None)
    model = CMLTNet(mcfg, word_vectors=_word_vectors(config, vocab), class_words=class_words).to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    word_weight = (word_loss_weights(config.word_weighting, train_set, beta=config.word_loss_beta)
                   if mcfg.use_infer else None)
    objective = CMLTNetObjective(config, model, class_counts, word_weight, multi_label,
                                 gather=ctx.enabled).to(device)
    params = list(model.parameters()) + [p for p in objective.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                                nesterov=True)
    start_epoch, history = 0, []
    amp = MixedPrecision(config.precision, device)
    if resume and checkpoint_path.exists():
        state = ckpt.load(checkpoint_path)
        try:
            model.load_state_dict(state["model"])
            objective.load_state_dict(state["objective"])
            optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigMismatchError(f"{checkpoint_path} does not fit the model of this config ({first_line}); "
                                      "it was written by a run with other settings: start a new run in another "
                                      "out_dir") from None
        ckpt.set_rng_state(state["rng"])
        amp.load_state_dict(state.get("grad_scaler"))
        start_epoch, history = state["epoch"], state["history"]
        if ctx.is_main and config.progress:
            print(f"resuming {config.out_dir} after epoch {start_epoch}/{config.epochs}")
    selector = BestEpoch(config.out_dir, multi_label, history) if val_set is not None else None
    wrapped = ctx.wrap(model, may_skip_parameters=model.words is not None)
    step_model = compiled(wrapped, config.compile)
    sampler = _sampler(config, train_set, ctx, config.class_balanced_sampling)
    loader = DataLoader(train_set, batch_size=config.batch_size, sampler=sampler, collate_fn=collate,
                        num_workers=config.num_workers, drop_last=len(sampler) > config.batch_size)
    scalars = ScalarLog(config.out_dir, config.tensorboard and ctx.is_main)
    for epoch in range(start_epoch, config.epochs):
        objective.update(epoch)
        sampler.set_epoch(epoch)
        log = _train_epoch(config, step_model, model, objective, optimizer, loader, epoch, device, ctx, amp=amp)
        log["lr"] = optimizer.param_groups[0]["lr"]
        history.append(log)
        if config.eval_every and (epoch + 1) % config.eval_every == 0 and epoch + 1 < config.epochs and ctx.is_main:
            log["eval"] = split_scores(model, config, test_set, class_counts, multi_label, device, collate)
        if selector is not None and ctx.is_main:
            selector.observe(log, split_scores(model, config, val_set, class_counts, multi_label, device, collate),
                             model)
        scalars.epoch(log)
        check_parameters(list(model.named_parameters()) + list(objective.named_parameters()), epoch)
        if ctx.is_main:
            ckpt.atomic_save({"format": ckpt.FORMAT, "epoch": epoch + 1, "model": model.state_dict(),
                              "objective": objective.state_dict(), "optimizer": optimizer.state_dict(),
                              "rng": ckpt.rng_state(), "history": history, "config": config.to_dict(),
                              "grad_scaler": amp.state_dict()},
                             checkpoint_path)
        ctx.barrier()
    scalars.close()
    return wrapped, history, selector


def _train_epoch(config, wrapped, model, objective, optimizer, loader, epoch, device, ctx, set_mode=None,
                 amp: MixedPrecision | None = None) -> dict:
    amp = amp or MixedPrecision(config.precision, device)
    (set_mode or wrapped.train)()
    gen = epoch_generator(config.seed, epoch, stream=1 + ctx.rank)
    flip = loader.dataset.meta.get("flip_ok", True)
    steps = len(loader)
    totals, seen, start = {}, 0, time.perf_counter()
    bar = StepProgress(loader, f"epoch {epoch + 1}/{config.epochs}", enabled=config.progress and ctx.is_main)
    for step, batch in enumerate(bar):
        if len(batch) == 0:  # every image of the batch was unreadable (skip_bad)
            continue
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(config.lr, epoch + step / max(1, steps), config.epochs, config.warmup_epochs)
        images = batch.images.to(device, non_blocking=True)
        if config.augment:
            images = augment_batch(images, generator=gen, flip=flip)
        if config.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        labels = batch.labels.to(device)
        word_ids, word_mask = batch.word_ids.to(device), batch.word_mask.to(device)
        with amp.autocast():
            out = wrapped(images, word_ids, word_mask)
            loss, parts = objective(out, labels, word_ids, word_mask, model)
        optimizer.zero_grad(set_to_none=True)
        amp.backward(loss)
        amp.unscale(optimizer)
        health = step_health(loss, optimizer).tolist()  # the step's one host sync
        check_step(health, parts, epoch, step, steps, optimizer.param_groups[0]["lr"],
                   gradient_overflow_skips=amp.scaling)
        amp.step(optimizer)
        n = images.shape[0]
        seen += n
        for name, value in {"loss": loss, **parts}.items():
            totals[name] = totals.get(name, 0.0) + float(value.detach()) * n
        rate = seen * ctx.world_size / (time.perf_counter() - start)
        bar.set_postfix(loss=f"{totals['loss'] / seen:.3f}", img_s=f"{rate:.0f}", lr=f"{optimizer.param_groups[0]['lr']:.3g}")
    elapsed = time.perf_counter() - start
    log = {"epoch": epoch + 1, **{k: v / max(1, seen) for k, v in totals.items()},
           "images_per_s": seen * ctx.world_size / max(elapsed, 1e-9), "seconds": elapsed}
    if ctx.is_main and config.progress:
        parts = ", ".join(f"{k} {v:.3f}" for k, v in log.items() if k not in ("epoch", "seconds", "images_per_s"))
        print(f"epoch {epoch + 1}/{config.epochs}: {parts} ({log['images_per_s']:.0f} img/s)")
    return log


# ----------------------------------------------------------------------------------------- stage two

def load_model(path: str | Path, device: torch.device | str = "cpu") -> tuple[CMLTNet, dict]:
    """A trained model and its metadata (classes, vocab, class counts, train config) from model.pt."""
    path = Path(path)
    if path.is_dir():
        path = path / MODEL
    state = ckpt.load(path)
    if "model_config" not in state:
        raise ValueError(f"{path} is a training checkpoint, not a finished model: word inference and evaluation "
                         f"need the run's {MODEL}, written when training ends; give the run folder of a finished "
                         "run (or finish this one with --resume)")
    model = CMLTNet(CMLTNetConfig(**state["model_config"]))
    model.load_state_dict(state["state_dict"])
    model.vocab = list(state["vocab"])
    model.classes = list(state["classes"])
    return model.to(device).eval(), state


def load_run(run_dir: str | Path, device: torch.device | str = "cpu", *,
             data_root: str | None = None) -> tuple[CMLTNet, dict, TrainConfig]:
    """A trained run folder: its model and metadata (load_model) and the TrainConfig it was trained
    with (data_root replaced when given), from which load_datasets rebuilds its data."""
    model, meta = load_model(run_dir, device)
    config = TrainConfig.from_dict(meta["train_config"])
    if data_root:
        config = config.replace(data_root=data_root)
    return model, meta, config


def save_model(model: CMLTNet, path: Path, config: TrainConfig, train_set) -> None:
    ckpt.atomic_save({"format": ckpt.FORMAT, "model_config": model.to_dict(), "state_dict": model.state_dict(),
                      "classes": list(train_set.classes), "vocab": list(train_set.vocab),
                      "class_counts": torch.as_tensor(train_set.class_counts).tolist(),
                      "multi_label": bool(train_set.multi_label), "train_config": config.to_dict(),
                      "image": {"size": train_set.image_size, "mean": list(train_set.mean),
                                "std": list(train_set.std), "resize": getattr(train_set, "resize", "crop"),
                                "background": list(getattr(train_set, "background", (255, 255, 255)))}}, path)


def _second_stage(config, train_set, val_set, class_counts, multi_label, device, ctx, collate, checkpoint_path,
                  resume):
    """crt: re-train the classifier on frozen features with class-balanced sampling; tau-norm:
    rescale the stage-one classifier's weight norms (Kang et al. 2020); logit-adjust with a stage-one
    model: no training, its logits are adjusted post hoc at evaluation (Menon et al. 2021)."""
    model, meta = load_model(config.stage1, device)
    if meta["classes"] != list(train_set.classes):
        raise ValueError(f"stage1 model {config.stage1} was trained on other classes than {config.dataset}")
    if config.method == "tau-norm":
        tau_normalize_(model.classifier, config.tau_norm)
        return model, [], None
    if config.method == "logit-adjust":
        return model, [], None
    for p in model.parameters():
        p.requires_grad_(False)
    torch.manual_seed(config.seed)
    crt = config.replace(epochs=config.crt_epochs, class_balanced_sampling=True, method="ce", warmup_epochs=0)
    # The new classifier is trained with plain CE, so a cosine one gets CE's scale (not stage one's: an
    # ldam-drw model's cosine classifier has scale 1 because its loss applied the scale).
    mc = model.config = dataclasses.replace(model.config, cosine_scale=cosine_scale(crt),
                                            learn_cosine_scale=config.learn_cosine_scale)
    model.classifier = build_classifier(mc.classifier, model.classifier.weight.shape[1], mc.num_classes,
                                        mc.cosine_scale, mc.learn_cosine_scale).to(device)
    objective = CMLTNetObjective(crt, model, class_counts, None, multi_label, classification_only=True).to(device)
    optimizer = torch.optim.SGD(model.classifier.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    sampler = _sampler(config, train_set, dist_utils.SINGLE, class_balanced=True)
    loader = DataLoader(train_set, batch_size=config.batch_size, sampler=sampler, collate_fn=collate,
                        num_workers=config.num_workers)
    history = []
    selector = BestEpoch(config.out_dir, multi_label, history) if val_set is not None else None

    def frozen_backbone_mode():  # batch-norm statistics stay those of stage one
        model.eval()
        model.classifier.train()

    for epoch in range(crt.epochs):
        sampler.set_epoch(epoch)
        history.append(_train_epoch(crt, model, model, objective, optimizer, loader, epoch, device,
                                    dist_utils.SINGLE, set_mode=frozen_backbone_mode))
        if selector is not None:
            selector.observe(history[-1], split_scores(model, config, val_set, class_counts, multi_label, device,
                                                      collate), model)
    return model, history, selector


# ----------------------------------------------------------------------------------------- evaluation

def evaluate_model(model: CMLTNet, config: TrainConfig, test_set, class_counts, vocab, multi_label, device,
                   collate, predictions_path: Path | None = None) -> dict:
    """Test metrics; with predictions_path, also the per-sample predictions (single-label data)."""
    need_s = model.config.use_infer
    logits, labels, semantic, words, indices = predict(
        model, test_set, batch_size=max(256, config.batch_size), device=device, collate=collate,
        progress=config.progress, need_semantic=need_s, num_workers=config.num_workers, return_indices=True)
    logits = evaluation_logits(config, logits, class_counts)
    metrics = classification_metrics(logits, labels, class_counts, multi_label)
    if predictions_path is not None and not multi_label:
        save_predictions(predictions_path, [test_set.item_key(i) for i in indices.tolist()], labels,
                         logits.argmax(1), dataset=config.dataset, data_seed=config.data_seed)
    if need_s and semantic is not None:
        metrics["words"] = word_inference_metrics(model, semantic, words, vocab, ks=config.word_topk)
    metrics["method"] = config.method
    metrics["seed"] = config.seed
    return metrics


def _data_report(dataset) -> dict:
    return {"size": len(dataset), "bad_images": dataset.bad_images.to_dict()}


def write_json(path: Path, payload) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, path)
