"""One training epoch of a stage: the step loop (learning rate per step, batch augmentation, forward,
objective, divergence check, optimizer step), its learning-rate schedule and its random stream."""
from __future__ import annotations

import math
import time

import torch

from pycmlt.data.transforms import augment_batch
from pycmlt.training.divergence import check_step, step_health
from pycmlt.training.progress import StepProgress


def cosine_lr(base_lr: float, epoch: float, epochs: int, warmup: int) -> float:
    """Linear warm-up then cosine decay; `epoch` may be fractional (per-step schedule)."""
    if warmup > 0 and epoch < warmup:
        return base_lr * (epoch + 1e-3) / warmup
    progress = (epoch - warmup) / max(1e-9, epochs - warmup)
    return base_lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def epoch_generator(seed: int, epoch: int, stream: int = 0) -> torch.Generator:
    """Random stream of one epoch, derived from (seed, epoch) only: a resumed run draws the same."""
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch * 7919 + stream) % (2**63))


def train_epoch(run, trainer, epoch: int) -> dict:
    """Trains `trainer` (trainer.py) for epoch `epoch` (0-based) of its stage; returns the epoch's
    log: mean losses, images per second, seconds."""
    config, ddp, device, optimizer = trainer.config, run.ddp, run.device, trainer.optimizer
    amp = trainer.amp
    trainer.set_train_mode()
    gen = epoch_generator(config.seed, epoch, stream=1 + ddp.rank)
    flip = trainer.loader.dataset.meta.get("flip_ok", True)
    steps = len(trainer.loader)
    totals, seen, start = {}, 0, time.perf_counter()
    bar = StepProgress(trainer.loader, f"epoch {epoch + 1}/{config.epochs}", enabled=config.progress and ddp.is_main)
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
            out = trainer.forward_model(images, word_ids, word_mask)
            loss, parts = trainer.objective(out, labels, word_ids, word_mask, trainer.model)
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
        rate = seen * ddp.world_size / (time.perf_counter() - start)
        bar.set_postfix(loss=f"{totals['loss'] / seen:.3f}", img_s=f"{rate:.0f}",
                        lr=f"{optimizer.param_groups[0]['lr']:.3g}")
    elapsed = time.perf_counter() - start
    log = {"epoch": epoch + 1, **{k: v / max(1, seen) for k, v in totals.items()},
           "images_per_s": seen * ddp.world_size / max(elapsed, 1e-9), "seconds": elapsed}
    return log


def epoch_line(log: dict, epochs: int) -> str:
    """One readable line per epoch: the mean losses, the val scores when the epoch was scored on val,
    and the throughput, e.g. 'epoch 3/10: loss 1.234, cls 1.100, val top-1 31.2%, val few 12.0% (850 img/s)'."""
    skip = ("epoch", "seconds", "images_per_s", "lr", "eval", "val") + tuple(k for k in log if k.startswith("val_"))
    parts = [f"{k} {v:.3f}" for k, v in log.items() if k not in skip and isinstance(v, (int, float))]
    parts += [f"val {name} {100 * log[key]:.1f}%" for key, name in (("val_top1", "top-1"), ("val_few", "few"),
                                                                     ("val_mAP", "mAP")) if log.get(key) is not None]
    return f"epoch {log['epoch']}/{epochs}: {', '.join(parts)} ({log['images_per_s']:.0f} img/s)"
