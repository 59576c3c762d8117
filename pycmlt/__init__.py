"""pycmlt: long-tailed image classification with descriptional words as privileged information
(CMLTNet), built on fused long-tail and cross-modal loss kernels (C++, CUDA, Triton)."""
from pycmlt import distributed, nn, ops
from pycmlt.ops import class_balanced_weights, ldam_margins

__version__ = "0.1.0"
__all__ = ["distributed", "nn", "ops", "class_balanced_weights", "ldam_margins", "__version__"]
