"""The state a training run's stages share, as small objects instead of long parameter lists:
RunData (the datasets and what is derived from them), RunState (the config, the data, where the run
executes and whether it resumes) and StageResult (what a stage hands back to the orchestration)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from pycmlt.training import model_evaluation
from pycmlt.training.config import TrainConfig
from pycmlt.training.ddp import DDPContext
from pycmlt.training.selection import BestEpoch


@dataclass
class RunData:
    train: object                        # the training split (an LTDataset)
    val: object | None                   # the val split (select_on="val") or None
    test: object | None                  # the test split, None for a val-only run (pycmlt tune)
    class_counts: torch.Tensor           # [C] float32 training count of each class
    vocab: list[str]                     # the training vocabulary (the test split shares it)
    multi_label: bool


@dataclass
class RunState:
    config: TrainConfig
    data: RunData
    device: torch.device
    ddp: DDPContext                      # ranks under torchrun (ddp.SINGLE otherwise)
    checkpoint_path: Path                # <out_dir>/checkpoint.pt
    resume: bool                         # continue from checkpoint_path when it exists

    def score(self, model: torch.nn.Module, dataset) -> dict:
        """The model's scores on one split, read as at test time (model_evaluation.split_scores)."""
        return model_evaluation.split_scores(model, self.config, dataset, self.data.class_counts,
                                             self.data.multi_label, self.device)

    def best_epoch_tracker(self, history: list[dict]) -> BestEpoch | None:
        """The val-selection tracker of a stage (select_on="val"), else None."""
        if self.data.val is None:
            return None
        return BestEpoch(self.config.out_dir, self.data.multi_label, history)


@dataclass
class StageResult:
    model: torch.nn.Module               # the trained model (never the DDP wrapper)
    history: list[dict]                  # one entry per trained epoch
    selector: BestEpoch | None = None    # the val selection of the stage's epochs, if any
