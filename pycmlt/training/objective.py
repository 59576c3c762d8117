"""Every loss a training run optimises (docs/method.md): L = L_cls + lambda_align * L_CMA + lambda_infer * L_CMI
(+ lambda_anchor * L_anchor with the text-anchor head).

L_cls: the classification loss of the run's recipe (training/recipes.py), built by
CLASSIFICATION_LOSSES, with its epoch schedule (deferred re-weighting for ldam-drw): update(epoch)
drives every scheduled loss through pycmlt.schedules.apply_epoch.

L_CMA: supervised cross-modal contrastive loss between image and text projections of the examples
that have words (same label = positive; class-balanced anchor weights). L_CMI: the inferred semantic
vector s (a) aligned with the pooled embedding of the image's words (target detached) and (b)
predicting those words as a multi-label problem over the vocabulary with word logits s . E^T
(class-balanced over word frequency; fused linear + BCE so the B x |V| logits never exist at once).
L_anchor (text_anchors with lambda_anchor > 0): class-wise contrast between every image's projection
into the text space and the frozen class-text anchors, both directions (image -> anchors: its own
class's anchor is the positive; anchor -> images: the batch's images of its class are), class-balanced.
Every term goes through pycmlt.ops, so the backend in use is decided there, not here. Each term runs
inside a profiler range named "pycmlt.loss.<term>" (free unless a torch.profiler is recording), so
that profiles attribute step time to the losses (benchmarks/train_step.py)."""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.profiler import record_function

from pycmlt import nn as loss_modules
from pycmlt import ops, schedules
from pycmlt.models import CMLTNet, CMLTNetOutput
from pycmlt.training.config import TrainConfig
from pycmlt.training.recipes import MULTI_LABEL_LOSS_METHODS, RECIPES, classification_recipe


def drw_start(config: TrainConfig) -> int:
    """The epoch where deferred re-weighting starts: drw_start_epoch, else 80% of the epochs."""
    return config.drw_start_epoch if config.drw_start_epoch is not None else max(1, int(0.8 * config.epochs))


def _ce(config, counts, multi_label):
    return loss_modules.ClassBalancedBCE() if multi_label else loss_modules.ClassBalancedCrossEntropy()


def _cb_focal(config, counts, multi_label):
    module = loss_modules.ClassBalancedBCE if multi_label else loss_modules.ClassBalancedCrossEntropy
    return module(counts, beta=config.beta, focal_gamma=config.focal_gamma)


def _ldam_drw(config, counts, multi_label):
    drw = schedules.DeferredReweighting(counts, beta=config.beta, start_epoch=drw_start(config))
    return loss_modules.ClassBalancedCrossEntropy(counts, ldam_max_margin=config.ldam_max_margin,
                                                  ldam_scale=config.ldam_scale, schedule=drw)


def _balanced_softmax(config, counts, multi_label):
    return loss_modules.ClassBalancedCrossEntropy(counts, logit_adjust_tau=1.0)


# Recipe.loss -> builder(config, class_counts, multi_label) of the criterion. Multi-label forms exist
# for the recipes with Recipe.multi_label (ce: plain BCE; cb-focal: class-balanced focal BCE).
CLASSIFICATION_LOSSES = {"ce": _ce, "cb-focal": _cb_focal, "ldam-drw": _ldam_drw,
                         "balanced-softmax": _balanced_softmax}


class ClassificationLoss(nn.Module):
    """The classification term L_cls of a run: `recipe` names the method whose loss it is."""

    def __init__(self, config: TrainConfig, class_counts: torch.Tensor, multi_label: bool):
        super().__init__()
        self.recipe = classification_recipe(config, multi_label)
        self.multi_label = multi_label
        if multi_label and not RECIPES[self.recipe].multi_label:
            raise ValueError(f"method {self.recipe!r} is defined for single-label data only; "
                             f"multi-label data supports {MULTI_LABEL_LOSS_METHODS}")
        counts = class_counts.float()  # > 0 for every class: run_checks refuses classes without training images
        self.criterion = CLASSIFICATION_LOSSES[RECIPES[self.recipe].loss](config, counts, multi_label)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.criterion(logits, labels)


def words_multi_hot(word_ids: torch.Tensor, word_mask: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """[B, |V|] float targets with 1 at every word of the example."""
    target = torch.zeros(word_ids.shape[0], vocab_size, device=word_ids.device)
    rows = torch.arange(word_ids.shape[0], device=word_ids.device).unsqueeze(1).expand_as(word_ids)
    target[rows[word_mask], word_ids[word_mask]] = 1.0
    return target


class CMLTNetObjective(nn.Module):
    """L_cls plus, for a model with words, the cross-modal terms; classification_only for cRT."""

    def __init__(self, config: TrainConfig, model: CMLTNet, class_counts: torch.Tensor,
                 word_weight: torch.Tensor | None, multi_label: bool, gather: bool = False,
                 classification_only: bool = False):
        """word_weight: [|V|] per-word weights of the word-prediction loss (training/word_weights.py),
        or None for unweighted."""
        super().__init__()
        self.config = config
        self.multi_label = multi_label
        self.classification = ClassificationLoss(config, class_counts, multi_label)
        mc = model.config
        self.use_align = mc.use_align and not classification_only
        self.use_infer = mc.use_infer and not classification_only
        if self.use_align:
            supervised = not multi_label  # same label = positive; multi-label data pairs each image with its own words
            self.contrastive = loss_modules.CrossModalContrastiveLoss(
                class_counts if supervised else None, beta=config.beta if supervised else None,
                logit_scale=math.log(1.0 / config.align_temperature), learnable_scale=False, gather=gather)
        if self.use_infer:
            self.register_buffer("word_weight", None if word_weight is None else word_weight.float())
        self.use_anchor = config.lambda_anchor > 0 and mc.text_anchors and not classification_only
        if self.use_anchor:
            if multi_label:
                raise ValueError("lambda_anchor > 0 needs single-label data (each image's class anchor is its "
                                 "positive); set lambda_anchor=0 for multi-label datasets")
            # Every rank holds all the anchors: no gathering, each rank contrasts its own images.
            self.anchor_contrast = loss_modules.CrossModalContrastiveLoss(
                class_counts, beta=config.beta, logit_scale=math.log(1.0 / config.align_temperature),
                learnable_scale=False)

    def update(self, epoch: int) -> None:
        """Puts every scheduled loss (the classification loss's class weights) at `epoch`."""
        schedules.apply_epoch(self, epoch)

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
                    parts["infer_align"] = ops.alignment_loss(s, out.pooled_words[has].detach(),
                                                                     kind="cosine")
                with record_function("pycmlt.loss.infer_words"):
                    parts["infer_words"] = self.word_prediction(s, word_ids[has], word_mask[has], model.word_table)
                total = total + self.config.lambda_infer * (parts["infer_align"] + parts["infer_words"])
        if self.use_anchor:
            with record_function("pycmlt.loss.anchor"):
                parts["anchor"] = self.anchor_term(out, labels, model)
            total = total + self.config.lambda_anchor * parts["anchor"]
        return total, parts

    def anchor_term(self, out: CMLTNetOutput, labels: torch.Tensor, model: CMLTNet) -> torch.Tensor:
        """L_anchor: the supervised contrastive loss between the images projected into the text space
        [B, d] and the class anchors [C, d] (anchor c carries label c), so that each image is pulled to
        its class's anchor and pushed from the others, and each anchor ranks its class's images above the
        batch's other images (anchors with no image of their class in the batch are left out)."""
        head = model.anchor_head
        anchors = head.anchors.to(out.h_v.dtype)
        classes = torch.arange(anchors.shape[0], device=anchors.device)
        return self.anchor_contrast(head.project(out.h_v), anchors, labels, classes)

    def word_prediction(self, s: torch.Tensor, word_ids: torch.Tensor, word_mask: torch.Tensor,
                        table: torch.Tensor) -> torch.Tensor:
        """L_CMI's word term on the images that have words: word logits s . E^T against each image's
        words, normalised per image (every image counts the same, whatever |V| and its word count are).

        softmax: -(1/|W_i|) sum_{w in W_i} a_w log softmax(s_i E^T)_w, averaged over images (each word
        pair is a row of a fused linear + CE, so the [B, |V|] logits never exist at once).
        bce: sum over the vocabulary of the (weighted) BCE, averaged over images. bce-mean: the mean over
        images x vocabulary (each word gets 1/|V| of an image's gradient).
        """
        kind = self.config.word_loss
        if kind == "softmax":
            rows = torch.arange(s.shape[0], device=s.device).unsqueeze(1).expand_as(word_ids)[word_mask]
            per_pair = ops.fused_linear_class_balanced_cross_entropy(
                s[rows], table, word_ids[word_mask], class_weight=self.word_weight, reduction="none")
            words_per_image = word_mask.sum(1).clamp_min(1).to(per_pair.dtype)
            return (per_pair / words_per_image[rows]).sum() / s.shape[0]
        targets = words_multi_hot(word_ids, word_mask, table.shape[0])
        reduction = "mean" if kind == "bce-mean" else "sum"
        loss = ops.fused_linear_class_balanced_bce(s, table, targets, loss_weight=self.word_weight,
                                                          reduction=reduction)
        return loss if kind == "bce-mean" else loss / s.shape[0]
