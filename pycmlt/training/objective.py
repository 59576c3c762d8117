"""The CMLTNet training objective (docs/method.md): L = L_cls + lambda_align * L_CMA + lambda_infer * L_CMI.

L_CMA: supervised cross-modal contrastive loss between image and text projections of the examples
that have words (same label = positive; class-balanced anchor weights). L_CMI: the inferred semantic
vector s (a) aligned with the pooled embedding of the image's words (target detached) and (b)
predicting those words as a multi-label problem over the vocabulary with word logits s . E^T
(class-balanced over word frequency; fused linear + BCE so the B x |V| logits never exist at once).
Every term goes through pycmlt.ops, so the backend in use is decided there, not here. Each term runs
inside a profiler range named "pycmlt.loss.<term>" (free unless a torch.profiler is recording), so
that profiles attribute step time to the losses (benchmarks/train_step.py)."""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.profiler import record_function

import pycmlt
from pycmlt.models import CMLTNet, CMLTNetOutput
from pycmlt.training.config import TrainConfig
from pycmlt.training.methods import ClassificationLoss


def words_multi_hot(word_ids: torch.Tensor, word_mask: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """[B, |V|] float targets with 1 at every word of the example."""
    target = torch.zeros(word_ids.shape[0], vocab_size, device=word_ids.device)
    rows = torch.arange(word_ids.shape[0], device=word_ids.device).unsqueeze(1).expand_as(word_ids)
    target[rows[word_mask], word_ids[word_mask]] = 1.0
    return target


class CMLTNetObjective(nn.Module):
    def __init__(self, config: TrainConfig, model: CMLTNet, class_counts: torch.Tensor,
                 word_counts: torch.Tensor | None, multi_label: bool, gather: bool = False,
                 classification_only: bool = False):
        super().__init__()
        self.config = config
        self.multi_label = multi_label
        self.classification = ClassificationLoss(config, class_counts, multi_label)
        mc = model.config
        self.use_align = mc.use_align and not classification_only
        self.use_infer = mc.use_infer and not classification_only
        if self.use_align:
            supervised = not multi_label  # same label = positive; multi-label data pairs each image with its own words
            self.contrastive = pycmlt.nn.CrossModalContrastiveLoss(
                class_counts if supervised else None, beta=config.beta if supervised else None,
                logit_scale=math.log(1.0 / config.align_temperature), learnable_scale=False, gather=gather)
        if self.use_infer:
            if word_counts is None:
                raise ValueError("cross-modal inference needs the training word counts")
            self.register_buffer("word_counts", word_counts.clamp_min(1).float())

    def update(self, epoch: int) -> None:
        self.classification.update(epoch)

    def forward(self, out: CMLTNetOutput, labels: torch.Tensor, word_ids: torch.Tensor | None,
                word_mask: torch.Tensor | None, model: CMLTNet) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        with record_function("pycmlt.loss.cls"):
            parts = {"cls": self.classification(out.logits, labels)}
        total = parts["cls"]
        has = out.has_words
        if has is not None and (self.use_align or self.use_infer):
            if self.use_align and out.z_v is not None:
                with record_function("pycmlt.loss.align"):
                    a, b = out.z_v[has], out.z_t[has]
                    parts["align"] = self.contrastive(a, b, None if self.multi_label else labels[has])
                total = total + self.config.lambda_align * parts["align"]
            if self.use_infer:
                s = out.s[has]
                with record_function("pycmlt.loss.infer_align"):
                    parts["infer_align"] = pycmlt.ops.alignment_loss(s, out.pooled_words[has].detach(),
                                                                     kind="cosine")
                with record_function("pycmlt.loss.infer_words"):
                    targets = words_multi_hot(word_ids[has], word_mask[has], model.word_table.shape[0])
                    parts["infer_words"] = pycmlt.ops.fused_linear_class_balanced_bce(
                        s, model.word_table, targets, class_counts=self.word_counts, beta=self.config.word_loss_beta)
                total = total + self.config.lambda_infer * (parts["infer_align"] + parts["infer_words"])
        return total, parts
