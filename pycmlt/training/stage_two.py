"""The second stage: methods that start from the model of a finished stage-one run (TrainConfig.stage1),
as their recipe's second_stage says (training/recipes.py; Kang et al. 2020, Menon et al. 2021):

  retrain-classifier (crt): a new classifier trained with plain CE on the frozen features, with
      class-balanced sampling; batch-norm keeps stage one's statistics. On a CMLTNet the features are
      the fused [h_v, psi(s)], and the temperatures of its extra logit heads (semantic head, text-anchor
      head) train with the classifier, so that the balanced stage re-weighs visual against semantic
      evidence (they start at their stage-one strength: times ldam_scale when stage one trained
      with LDAM-DRW, whose loss multiplied every logit by it). It checkpoints every epoch
      and resumes like stage one. Under torchrun every rank trains in step on its share of the
      class-balanced draws (the sampler is split across ranks, DDP averages the classifier's
      gradients) and rank 0 alone writes the checkpoint, best.pt and the outputs.
  tau-normalize (tau-norm): the stage-one classifier's weight norms rescaled, no training.
  keep (logit-adjust with stage1): the stage-one model as it is; only its evaluation differs
      (post-hoc adjusted logits)."""
from __future__ import annotations

import dataclasses
import math

import torch

from pycmlt.models import tau_normalize_
from pycmlt.models.heads import build_classifier
from pycmlt.training.checkpoint import load_model, saved_train_config
from pycmlt.training.objective import CMLTNetObjective
from pycmlt.training.recipes import RECIPES, classification_recipe, cosine_scale
from pycmlt.training.run_state import RunState, StageResult
from pycmlt.training.trainer import Trainer, fit, make_loader


def train_stage_two(run: RunState) -> StageResult:
    config = run.config
    model, meta = load_model(config.stage1, run.device)
    if meta["classes"] != list(run.data.train.classes):
        raise ValueError(f"stage1 model {config.stage1} was trained on other classes than {config.dataset}")
    kind = RECIPES[config.method].second_stage
    if kind == "tau-normalize":
        tau_normalize_(model.classifier, config.tau_norm)
        return StageResult(model, [])
    if kind == "keep":
        return StageResult(model, [])
    if kind != "retrain-classifier":
        raise ValueError(f"method {config.method!r}: unknown second stage {kind!r} in its recipe")
    return fit(run, _classifier_retraining(run, model, meta))


def head_temperatures(model) -> list[torch.nn.Parameter]:
    """The learned log-temperatures of a CMLTNet's extra logit heads (semantic head, text-anchor head)."""
    found = [getattr(model, "semantic_log_scale", None)]
    if getattr(model, "anchor_head", None) is not None:
        found.append(model.anchor_head.log_scale)
    return [p for p in found if p is not None]


def stage_one_logit_scale(meta: dict, multi_label: bool) -> float:
    """The factor stage one's loss applied to the model's logits: ldam_scale under LDAM-DRW, else 1."""
    stage_one = saved_train_config(meta)
    recipe = RECIPES[classification_recipe(stage_one, multi_label)]
    return stage_one.ldam_scale if recipe.loss == "ldam-drw" else 1.0


def _classifier_retraining(run: RunState, model, meta: dict) -> Trainer:
    """cRT: the stage-one model with its features frozen, a new classifier and the extra heads'
    temperatures to train."""
    config = run.config
    for p in model.parameters():
        p.requires_grad_(False)
    temperatures = head_temperatures(model)
    if temperatures:
        shift = math.log(stage_one_logit_scale(meta, run.data.multi_label))
        with torch.no_grad():  # a resumed run then loads the trained values from its checkpoint
            for p in temperatures:
                p.add_(shift)
                p.requires_grad_(True)
    torch.manual_seed(config.seed)
    crt = config.replace(epochs=config.crt_epochs, class_balanced_sampling=True, warmup_epochs=0)
    # The new classifier is trained with the recipe's loss (plain CE), so a cosine one gets that loss's
    # scale (not stage one's: an ldam-drw model's cosine classifier has scale 1 because its loss applied it).
    mc = model.config = dataclasses.replace(model.config, cosine_scale=cosine_scale(crt),
                                            learn_cosine_scale=config.learn_cosine_scale)
    model.classifier = build_classifier(mc.classifier, model.classifier.weight.shape[1], mc.num_classes,
                                        mc.cosine_scale, mc.learn_cosine_scale).to(run.device)
    objective = CMLTNetObjective(crt, model, run.data.class_counts, None, run.data.multi_label,
                                 classification_only=True).to(run.device)
    groups = [{"params": list(model.classifier.parameters())}]
    if temperatures:  # no weight decay: it would pull the temperatures towards 1
        groups.append({"params": temperatures, "weight_decay": 0.0})
    optimizer = torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    sampler, loader = make_loader(run, crt, class_balanced=True, drop_last=False)
    return Trainer(crt, model, objective, optimizer, sampler, loader, frozen_features=True)

