"""Training and evaluation of CMLTNet and the long-tail baselines."""
from pycmlt.training.config import METHODS, TrainConfig
from pycmlt.training.loop import TrainResult, load_model, train

__all__ = ["METHODS", "TrainConfig", "TrainResult", "load_model", "train"]
