"""The one place that decides which implementation (`torch`, `cpu`, `triton`, `cuda`) runs an op."""
from __future__ import annotations

import contextlib
import os

import torch

from pycmlt import _extension

BACKENDS = ("auto", "torch", "cpu", "triton", "cuda")
KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_default = os.environ.get("PYCMLT_BACKEND", "auto")


def triton_available() -> bool:
    """Triton imports and can run here: on a GPU, or on the CPU under TRITON_INTERPRET=1."""
    return _triton_importable() and (torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1")


@torch.compiler.assume_constant_result
def _triton_importable() -> bool:
    global _triton_import_ok
    if _triton_import_ok is None:
        try:
            import triton  # noqa: F401

            _triton_import_ok = True
        except Exception:
            _triton_import_ok = False
    return _triton_import_ok


_triton_import_ok: bool | None = None


def available_backends(device: torch.device | str = "cpu") -> list[str]:
    """Backends that can run on `device`, best first (`torch` is always last)."""
    device = torch.device(device)
    found = []
    if device.type == "cuda" and torch.cuda.is_available():  # TRITON_INTERPRET=1 alone runs CPU tensors only
        if _extension.cuda_kernels_available():
            found.append("cuda")
        if triton_available():
            found.append("triton")
    elif device.type == "cpu":
        if _extension.native_available():
            found.append("cpu")
        if triton_available() and os.environ.get("TRITON_INTERPRET") == "1":
            found.append("triton")
    found.append("torch")
    return found


def set_default_backend(name: str) -> None:
    """What `backend="auto"` means from now on (e.g. "torch" to run every op through the reference).

    A default that cannot run on a call's device or dtype falls back to the automatic choice.
    """
    global _default
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    _default = name


def get_default_backend() -> str:
    return _default


@contextlib.contextmanager
def use_backend(name: str):
    """Context manager form of :func:`set_default_backend`."""
    previous = _default
    set_default_backend(name)
    try:
        yield
    finally:
        set_default_backend(previous)


_resolved: dict = {}  # (backend, default, device, dtype, gpu_preference, TRITON_INTERPRET) -> choice


def resolve(backend: str, tensor: torch.Tensor, op: str, *, gpu_preference: tuple[str, ...] | None = None) -> str:
    """The concrete backend for `op` on `tensor`, or a ValueError saying why `backend` can't run.

    gpu_preference: an op's own order of the GPU backends for `auto` (default: cuda, then triton).
    A choice that succeeded is remembered (per backend, default, device, dtype and TRITON_INTERPRET),
    so the per-call cost is one dictionary look-up; errors are never cached.
    """
    if torch.compiler.is_compiling():  # traced once: no cache side effects in the graph
        return _resolve(backend, tensor, op, gpu_preference)
    key = (backend, _default, tensor.device, tensor.dtype, gpu_preference, os.environ.get("TRITON_INTERPRET"))
    try:
        return _resolved[key]
    except (KeyError, TypeError):  # TypeError: an unhashable backend argument, reported below
        pass
    choice = _resolve(backend, tensor, op, gpu_preference)
    _resolved[key] = choice
    return choice


def _resolve(backend, tensor, op, gpu_preference) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"{op}: backend must be one of {BACKENDS}, got {backend!r}")
    device = tensor.device
    if backend == "auto":
        # A process-wide default applies wherever it can run; elsewhere "auto" picks.
        if _default == "torch" or (_default != "auto" and tensor.dtype in KERNEL_DTYPES
                                   and _default in available_backends(device)):
            return _default
        if tensor.dtype not in KERNEL_DTYPES:
            return "torch"
        found = available_backends(device)
        choice = found[0]
        if gpu_preference and device.type == "cuda":
            choice = next((b for b in gpu_preference if b in found), choice)
        # The Triton interpreter is a correctness tool, never an automatic choice on the CPU.
        return "torch" if (choice == "triton" and device.type == "cpu") else choice
    if backend != "torch":
        if tensor.dtype not in KERNEL_DTYPES:
            raise TypeError(
                f"{op}: backend={backend!r} supports float32, float16 and bfloat16 inputs, got "
                f"{tensor.dtype}; use backend='torch' for other dtypes")
        if backend not in available_backends(device):
            raise ValueError(f"{op}: backend={backend!r} is not available for tensors on {device} "
                             f"(available: {available_backends(device)}){_why_missing(backend)}")
    return backend


def _why_missing(backend: str) -> str:
    if backend in ("cpu", "cuda") and not _extension.native_available():
        return f"; the C++ extension failed to load: {_extension.LOAD_ERROR}"
    if backend == "cuda":
        return "; needs a CUDA tensor and an extension built against a CUDA-enabled torch"
    if backend == "triton":
        return "; needs triton and a CUDA tensor (or TRITON_INTERPRET=1 for CPU tensors)"
    return ""
