"""Stage one: a CMLTNet (or a plain network for the baselines) trained from scratch with the
recipe's objective, SGD with Nesterov momentum and a warm-up + cosine learning rate."""
from __future__ import annotations

import torch

from pycmlt.training.model_setup import build_model
from pycmlt.training.objective import CMLTNetObjective
from pycmlt.training.run_state import RunState, StageResult
from pycmlt.training.trainer import Trainer, fit, make_loader
from pycmlt.training.word_weights import word_loss_weights


def train_stage_one(run: RunState) -> StageResult:
    config, data = run.config, run.data
    model = build_model(config, data.train, run.device)
    word_weight = (word_loss_weights(config.word_weighting, data.train, beta=config.word_loss_beta)
                   if model.config.use_infer else None)
    objective = CMLTNetObjective(config, model, data.class_counts, word_weight, data.multi_label,
                                 gather=run.ddp.enabled).to(run.device)
    params = list(model.parameters()) + [p for p in objective.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                                nesterov=True)
    sampler, loader = make_loader(run, config, class_balanced=config.class_balanced_sampling, drop_last=True)
    trainer = Trainer(config, model, objective, optimizer, sampler, loader,
                      may_skip_parameters=model.words is not None)
    return fit(run, trainer)
