"""Loads the compiled extension (pycmlt._C) once and says which native backends it provides.

Whether the CUDA kernels exist is a fact of the build (CMakeLists.txt's PYCMLT_WITH_CUDA), which the
extension reports through pycmlt::compiled_with_cuda() (csrc/build_info.cpp), so no private torch
dispatcher API is needed to find out.
"""
from __future__ import annotations

import torch

try:
    from pycmlt import _C  # noqa: F401  (importing registers the TORCH_LIBRARY ops)

    LOAD_ERROR: Exception | None = None
except ImportError as exc:  # a source checkout that was never built
    _C = None
    LOAD_ERROR = exc


def _compiled_with_cuda() -> bool:
    """What the loaded extension says about its CUDA kernels (False without an extension)."""
    if _C is None:
        return False
    try:
        report = torch.ops.pycmlt.compiled_with_cuda
    except AttributeError as exc:
        raise ImportError(
            f"pycmlt._C ({_C.__file__}) is older than its sources: it has no pycmlt::compiled_with_cuda op. "
            "Rebuild it with: pip install --no-build-isolation --no-deps -e .") from exc
    return bool(report())


CUDA_KERNELS_COMPILED: bool = _compiled_with_cuda()


def native_available() -> bool:
    """True when the C++ extension is importable (the `cpu` backend exists)."""
    return _C is not None


def cuda_kernels_available() -> bool:
    """True when the extension was compiled with CUDA kernels and a GPU is visible."""
    return CUDA_KERNELS_COMPILED and torch.cuda.is_available()
