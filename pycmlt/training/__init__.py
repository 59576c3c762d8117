"""Training and evaluation of CMLTNet and the long-tail baselines."""
from pycmlt.training.checkpoint import load_model
from pycmlt.training.config import TrainConfig
from pycmlt.training.loop import TrainResult, train
from pycmlt.training.recipes import METHODS, RECIPES

__all__ = ["METHODS", "RECIPES", "TrainConfig", "TrainResult", "load_model", "train"]
