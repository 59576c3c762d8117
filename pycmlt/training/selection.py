"""Model selection on the val split (TrainConfig.select_on="val"): every epoch is scored on val, the
weights of the best epoch are kept in best.pt (written atomically, before the epoch's checkpoint),
and the run is tested with them. The best score lives in the checkpointed history, so a killed run
resumes with the same best epoch. Best = highest val top-1 (mAP for multi-label data); a tie keeps
the earlier epoch. The scores come from model_evaluation.split_scores."""
from __future__ import annotations

from pathlib import Path

import torch

from pycmlt.training import checkpoint as ckpt

BEST = "best.pt"


class BestEpoch:
    """Tracks the best epoch on val and keeps its weights in <out_dir>/best.pt."""

    def __init__(self, out_dir: str | Path, multi_label: bool, history: list[dict]):
        self.path = Path(out_dir) / BEST
        self.key = "mAP" if multi_label else "top1"
        self.epoch, self.score, self.scores = None, float("-inf"), None
        for log in history:  # a resumed run: the best so far is in the checkpointed history
            if log.get(f"val_{self.key}") is not None and log[f"val_{self.key}"] > self.score:
                self.epoch, self.score, self.scores = log["epoch"], log[f"val_{self.key}"], log["val"]

    def observe(self, log: dict, scores: dict, model: torch.nn.Module) -> None:
        """Records an epoch's val scores in its history entry; saves the weights if they are the best."""
        log["val"] = scores
        for k in ("top1", "few", "mAP"):
            if k in scores:
                log[f"val_{k}"] = scores[k]
        if scores[self.key] is not None and scores[self.key] > self.score:
            self.epoch, self.score, self.scores = log["epoch"], scores[self.key], scores
            ckpt.atomic_save({"format": ckpt.FORMAT, "epoch": self.epoch, "score": self.score, "val": scores,
                              "model": model.state_dict()}, self.path)

    def load_best(self, model: torch.nn.Module) -> int:
        """Puts the best epoch's weights into `model`; returns that epoch."""
        if self.epoch is None:
            raise RuntimeError("select_on='val': no epoch was scored on val")
        state = ckpt.load(self.path)
        if state["epoch"] != self.epoch:
            raise RuntimeError(f"{self.path} holds epoch {state['epoch']} but the history's best val epoch is "
                               f"{self.epoch}; the run folder was changed by something else")
        model.load_state_dict(state["model"])
        return self.epoch
