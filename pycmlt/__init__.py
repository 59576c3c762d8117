"""pycmlt: long-tailed image classification with descriptional words as privileged information
(CMLTNet), built on fused long-tail and cross-modal loss kernels (C++, CUDA, Triton)."""
from pycmlt import eval, index, nn, ops, text  # noqa: A004 (pycmlt.eval shadows the builtin only here)
from pycmlt.ops import class_balanced_weights, ldam_margins

__version__ = "0.1.0"
__all__ = ["eval", "index", "nn", "ops", "text", "class_balanced_weights", "ldam_margins", "__version__"]
