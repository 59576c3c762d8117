"""The epochs of a training stage, shared by stage one and cRT: a Trainer holds what the stage
trains (model, objective, optimizer, loader); fit() resumes it from checkpoint.pt when asked, trains
the remaining epochs, scores every epoch on val for model selection, checks the parameters, and
checkpoints every epoch atomically (rank 0 writes; every rank trains in step under torchrun)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, DistributedSampler

from pycmlt.data import ClassBalancedSampler, collate
from pycmlt.training import checkpoint as ckpt
from pycmlt.training import epoch_loop
from pycmlt.training.config import TrainConfig
from pycmlt.training.divergence import check_parameters
from pycmlt.training.objective import CMLTNetObjective
from pycmlt.training.precision import MixedPrecision, compiled
from pycmlt.training.run_state import RunState, StageResult
from pycmlt.training.scalars import ScalarLog


@dataclass
class Trainer:
    config: TrainConfig                  # the stage's settings (cRT: its epochs, no warm-up)
    model: torch.nn.Module               # the CMLTNet being trained
    objective: CMLTNetObjective
    optimizer: torch.optim.Optimizer
    sampler: object                      # set_epoch(epoch) before every epoch
    loader: DataLoader
    frozen_features: bool = False        # cRT: only the classifier trains; batch-norm keeps stage one's statistics
    may_skip_parameters: bool = False    # a step can leave parameters without gradient (DDP must know)
    wrapped: torch.nn.Module | None = None  # the model as trained (DDP under torchrun), set by fit
    forward_model: torch.nn.Module | None = None  # wrapped, torch.compiled when config.compile; set by fit
    amp: MixedPrecision | None = None    # autocast and loss scaling of config.precision; set by fit

    def set_train_mode(self) -> None:
        if self.frozen_features:
            self.model.eval()
            self.model.classifier.train()
        else:
            self.wrapped.train()


def make_loader(run: RunState, config: TrainConfig, *, class_balanced: bool, drop_last: bool):
    """(sampler, loader) of the training split: this rank's share of every epoch, shuffled, or with
    every class drawn equally often (class_balanced)."""
    data, ddp = run.data.train, run.ddp
    if class_balanced:
        sampler = ClassBalancedSampler(data.targets, seed=config.seed, num_replicas=ddp.world_size, rank=ddp.rank)
    else:
        sampler = DistributedSampler(data, num_replicas=ddp.world_size, rank=ddp.rank, shuffle=True, seed=config.seed)
    loader = DataLoader(data, batch_size=config.batch_size, sampler=sampler, collate_fn=collate,
                        num_workers=config.num_workers, drop_last=drop_last and len(sampler) > config.batch_size)
    return sampler, loader


def fit(run: RunState, trainer: Trainer) -> StageResult:
    """Trains the stage's remaining epochs (all of them unless run.resume finds a checkpoint)."""
    config, ddp = trainer.config, run.ddp
    start_epoch, history = 0, []
    trainer.amp = MixedPrecision(config.precision, run.device)
    if run.resume and run.checkpoint_path.exists():
        start_epoch, history = ckpt.restore_training_state(run.checkpoint_path, trainer)
        if ddp.is_main and config.progress:
            print(f"resuming {run.config.out_dir} after epoch {start_epoch}/{config.epochs}")
    selector = run.best_epoch_tracker(history)
    trainer.wrapped = ddp.wrap(trainer.model, may_skip_parameters=trainer.may_skip_parameters)
    trainer.forward_model = compiled(trainer.wrapped, config.compile)
    scalars = ScalarLog(run.config.out_dir, run.config.tensorboard and ddp.is_main)
    for epoch in range(start_epoch, config.epochs):
        trainer.objective.update(epoch)
        trainer.sampler.set_epoch(epoch)
        log = epoch_loop.train_epoch(run, trainer, epoch)
        log["lr"] = trainer.optimizer.param_groups[0]["lr"]
        history.append(log)
        if ddp.is_main:
            if config.eval_every and (epoch + 1) % config.eval_every == 0 and epoch + 1 < config.epochs:
                log["eval"] = run.score(trainer.model, run.data.test)
            if selector is not None:
                selector.observe(log, run.score(trainer.model, run.data.val), trainer.model)
            if config.progress:  # flushed: a log file gets each epoch's line when it ends
                print(epoch_loop.epoch_line(log, config.epochs), flush=True)
        scalars.epoch(log)
        check_parameters(list(trainer.model.named_parameters()) + list(trainer.objective.named_parameters()), epoch)
        if ddp.is_main:
            ckpt.save_training_state(run.checkpoint_path, epoch + 1, trainer, history, run.config)
        ddp.barrier()
    scalars.close()
    return StageResult(trainer.model, history, selector)
