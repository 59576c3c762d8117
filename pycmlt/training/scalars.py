"""Optional TensorBoard scalars of a run (TrainConfig.tensorboard): per-epoch losses, learning rate,
throughput and evaluation metrics under <out_dir>/tensorboard/."""
from __future__ import annotations

from pathlib import Path


class ScalarLog:
    def __init__(self, out_dir: str | Path, enabled: bool):
        self.writer = None
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise ImportError("tensorboard=True needs the tensorboard package: pip install tensorboard "
                              "(or pip install 'pycmlt[tensorboard]')") from exc
        self.writer = SummaryWriter(log_dir=str(Path(out_dir) / "tensorboard"))

    def epoch(self, log: dict) -> None:
        if self.writer is None:
            return
        step = log["epoch"]
        for key, value in log.items():
            if key == "epoch":
                continue
            if isinstance(value, dict):
                for sub, v in value.items():
                    if isinstance(v, (int, float)) and v is not None:
                        self.writer.add_scalar(f"{key}/{sub}", v, step)
            elif isinstance(value, (int, float)):
                self.writer.add_scalar(f"train/{key}", value, step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
