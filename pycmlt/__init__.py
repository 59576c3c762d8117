"""pycmlt: long-tailed image classification with descriptional words as privileged information
(CMLTNet), built on fused long-tail and cross-modal loss kernels (C++, CUDA, Triton)."""
from pycmlt._version import __version__
from pycmlt import distributed, evaluation, index, nn, ops, schedules, text
from pycmlt.ops import class_balanced_weights, ldam_margins

__all__ = ["distributed", "evaluation", "index", "nn", "ops", "schedules", "text", "class_balanced_weights",
           "ldam_margins", "train", "TrainConfig", "__version__"]


def __getattr__(name):
    # The training stack (models, data) is imported on first use, not with the loss ops.
    if name in ("train", "TrainConfig", "TrainResult", "load_model"):
        from pycmlt import training

        return getattr(training, name)
    if name == "eval":  # the deprecated name of pycmlt.evaluation (shadowed the builtin): warns on first use
        import pycmlt.eval

        return pycmlt.eval
    raise AttributeError(f"module 'pycmlt' has no attribute {name!r}")
