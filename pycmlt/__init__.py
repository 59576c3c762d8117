"""pycmlt: long-tailed image classification with descriptional words as privileged information
(CMLTNet), built on fused long-tail and cross-modal loss kernels (C++, CUDA, Triton)."""
from pycmlt._version import __version__
from pycmlt import distributed, eval, index, nn, ops, schedules, text  # noqa: A004 (pycmlt.eval shadows the builtin only here)
from pycmlt.ops import class_balanced_weights, ldam_margins

__all__ = ["distributed", "eval", "index", "nn", "ops", "schedules", "text", "class_balanced_weights",
           "ldam_margins", "train", "TrainConfig", "__version__"]


def __getattr__(name):
    # The training stack (models, data) is imported on first use, not with the loss ops.
    if name in ("train", "TrainConfig", "TrainResult", "load_model"):
        from pycmlt import training

        return getattr(training, name)
    raise AttributeError(f"module 'pycmlt' has no attribute {name!r}")
