"""Loads the compiled extension (pycmlt._C) once and says which native backends it provides."""
from __future__ import annotations

import torch

try:
    from pycmlt import _C  # noqa: F401  (importing registers the TORCH_LIBRARY ops)

    LOAD_ERROR: Exception | None = None
except ImportError as exc:  # a source checkout that was never built
    _C = None
    LOAD_ERROR = exc


def native_available() -> bool:
    """True when the C++ extension is importable (the `cpu` backend exists)."""
    return _C is not None


def cuda_kernels_available() -> bool:
    """True when the extension was compiled with CUDA kernels and a GPU is visible."""
    if _C is None or not torch.cuda.is_available():
        return False
    return torch._C._dispatch_has_kernel_for_dispatch_key("pycmlt::cb_cross_entropy", "CUDA")
