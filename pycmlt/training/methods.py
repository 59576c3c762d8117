"""What each method means: which CMLTNet modules are on, which classification loss trains the
classifier, and how logits are read at evaluation (docs/method.md, docs/ops/cross_entropy.md;
Kang et al. 2020 for crt and tau-norm; Menon et al. 2021 for post-hoc logit adjustment)."""
from __future__ import annotations

import math

import torch
from torch import nn

import pycmlt
from pycmlt.models import CMLTNetConfig
from pycmlt.training.config import TrainConfig

MULTI_LABEL_LOSSES = ("ce", "cb-focal")


def loss_method(config: TrainConfig, multi_label: bool = False) -> str:
    """The classification-loss recipe of a run. cmltnet trains with cls_loss, by default balanced softmax
    on single-label data and cb-focal (class-balanced sigmoid BCE) on multi-label data, where a softmax
    over classes does not apply."""
    if config.method == "cmltnet":
        return config.cls_loss or ("cb-focal" if multi_label else "balanced-softmax")
    if config.method in ("crt", "tau-norm"):
        return "ce"
    return config.method


def drw_start(config: TrainConfig) -> int:
    return config.drw_start_epoch if config.drw_start_epoch is not None else max(1, int(0.8 * config.epochs))


DEFAULT_COSINE_SCALE = 16.0


def cosine_scale(config: TrainConfig) -> float:
    """The cosine classifier's logit scale: the configured one, else 1 under ldam-drw (whose loss applies
    ldam_scale to the margin-adjusted cosines) and DEFAULT_COSINE_SCALE for every other loss."""
    if config.cosine_scale is not None:
        return config.cosine_scale
    return 1.0 if loss_method(config) == "ldam-drw" else DEFAULT_COSINE_SCALE


def model_config(config: TrainConfig, num_classes: int, vocab_size: int) -> CMLTNetConfig:
    cmlt = config.method == "cmltnet"
    use_infer = cmlt and config.use_infer
    classifier = config.classifier or ("cosine" if loss_method(config) == "ldam-drw" else "linear")
    return CMLTNetConfig(
        cosine_scale=cosine_scale(config), learn_cosine_scale=config.learn_cosine_scale,
        num_classes=num_classes, vocab_size=vocab_size if cmlt else 0, backbone=config.backbone,
        backbone_weights=config.backbone_weights, word_dim=config.word_dim, text_pooling=config.text_pooling,
        use_align=cmlt and config.use_align, use_infer=use_infer, use_fuse=use_infer and config.use_fuse,
        fusion=config.fusion, classifier=classifier, semantic_head=use_infer and config.semantic_head)


class ClassificationLoss(nn.Module):
    """The classification term L_cls with its schedule (deferred re-weighting for ldam-drw)."""

    def __init__(self, config: TrainConfig, class_counts: torch.Tensor, multi_label: bool):
        super().__init__()
        self.recipe = loss_method(config, multi_label)
        self.multi_label = multi_label
        counts = class_counts.float()  # > 0 for every class: run_checks refuses classes without training images
        if multi_label:
            if self.recipe not in MULTI_LABEL_LOSSES:
                raise ValueError(f"method {self.recipe!r} is defined for single-label data only; "
                                 f"multi-label data supports {MULTI_LABEL_LOSSES}")
            kw = dict(beta=config.beta, focal_gamma=config.focal_gamma) if self.recipe == "cb-focal" else {}
            self.criterion = pycmlt.nn.ClassBalancedBCE(counts if kw else None, **kw)
            return
        kw = {}
        if self.recipe == "cb-focal":
            kw = dict(beta=config.beta, focal_gamma=config.focal_gamma)
        elif self.recipe == "ldam-drw":
            kw = dict(ldam_max_margin=config.ldam_max_margin, ldam_scale=config.ldam_scale,
                      schedule=pycmlt.schedules.DeferredReweighting(counts, beta=config.beta,
                                                                    start_epoch=drw_start(config)))
        elif self.recipe == "balanced-softmax":
            kw = dict(logit_adjust_tau=1.0)
        self.criterion = pycmlt.nn.ClassBalancedCrossEntropy(counts if kw else None, **kw)

    def update(self, epoch: int) -> None:
        self.criterion.update(epoch)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.criterion(logits, labels)


def evaluation_logits(config: TrainConfig, logits: torch.Tensor, class_counts: torch.Tensor) -> torch.Tensor:
    """Logits as read at test time: post-hoc adjusted (logits - tau log prior) for logit-adjust."""
    if config.method == "logit-adjust" or (config.method == "cmltnet" and config.cls_loss == "logit-adjust"):
        prior = class_counts.clamp_min(1).float() / class_counts.clamp_min(1).sum()
        return logits - config.logit_adjust_tau * torch.log(prior).to(logits.device)
    return logits


def cosine_lr(base_lr: float, epoch: float, epochs: int, warmup: int) -> float:
    """Linear warm-up then cosine decay; `epoch` may be fractional (per-step schedule)."""
    if warmup > 0 and epoch < warmup:
        return base_lr * (epoch + 1e-3) / warmup
    progress = (epoch - warmup) / max(1e-9, epochs - warmup)
    return base_lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
