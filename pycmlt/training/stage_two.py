"""The second stage: methods that start from the model of a finished stage-one run (TrainConfig.stage1),
as their recipe's second_stage says (training/recipes.py; Kang et al. 2020, Menon et al. 2021):

  retrain-classifier (crt): a new classifier trained with plain CE on the frozen features, with
      class-balanced sampling; batch-norm keeps stage one's statistics. It checkpoints every epoch
      and resumes like stage one. Under torchrun every rank trains in step on its share of the
      class-balanced draws (the sampler is split across ranks, DDP averages the classifier's
      gradients) and rank 0 alone writes the checkpoint, best.pt and the outputs.
  tau-normalize (tau-norm): the stage-one classifier's weight norms rescaled, no training.
  keep (logit-adjust with stage1): the stage-one model as it is; only its evaluation differs
      (post-hoc adjusted logits)."""
from __future__ import annotations

import dataclasses

import torch

from pycmlt.models import tau_normalize_
from pycmlt.models.heads import build_classifier
from pycmlt.training.checkpoint import load_model
from pycmlt.training.objective import CMLTNetObjective
from pycmlt.training.recipes import RECIPES, cosine_scale
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
    return fit(run, _classifier_retraining(run, model))


def _classifier_retraining(run: RunState, model) -> Trainer:
    """cRT: the stage-one model with its features frozen and a new classifier to train."""
    config = run.config
    for p in model.parameters():
        p.requires_grad_(False)
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
    optimizer = torch.optim.SGD(model.classifier.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    sampler, loader = make_loader(run, crt, class_balanced=True, drop_last=False)
    return Trainer(crt, model, objective, optimizer, sampler, loader, frozen_features=True)

