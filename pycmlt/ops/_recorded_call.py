"""The eager fast path of a loss module: its last fused-op call, replayed while cheap guards hold.

A loss module calls its op with the same options, class tensors and backend on every training step,
so nearly everything the general path derives per call (the checked options, the backend choice, the
per-class tensors in the kernels' layout) is what it derived last time. At small shapes that
derivation, ~10-20 us of Python, costs more than the kernel. `RecordedCall` keeps the general path's
result for one module and replays the op directly while the guards below hold; any miss takes the
general path again, which checks everything (and raises its clear errors) and records afresh.

The guards: plain `torch.Tensor` inputs of the recorded kind (2-D logits of the recorded dtype and
device; the op family checks its target), the same options object and backend argument, the same
process-wide default backend, the same class tensors (identity and in-place version), no
torch.compile tracing and no torch.func transform. Only ops with C++ autograd are recorded (the
`cpu` and `cuda` backends): a call is then one dispatcher entry.
"""
from __future__ import annotations

import torch

from pycmlt.ops import _backend
from pycmlt.ops._registration import native_autograd_overload

_peek_transform = torch._C._functorch.peek_interpreter_stack
_is_compiling = torch.compiler.is_compiling


class Recorded:
    """What one recorded call replays (immutable once built)."""

    __slots__ = ("op", "args", "sources", "versions", "options", "backend", "default", "device", "dtype",
                 "num_classes", "check_range")

    def run(self, logits, target, compute_grad: bool) -> torch.Tensor:
        """The recorded op on new inputs: the loss in the logits' dtype."""
        loss = self.op(logits, target, *self.args, compute_grad)[0]
        return loss if loss.dtype is logits.dtype else loss.to(logits.dtype)


class RecordedCall:
    """One module's last eligible fused-op call (see the module docstring), or None in `state`.

    The record is swapped in one assignment, so threads that share a module (nn.DataParallel replicas
    share its __dict__) see an old or a new record, never a mix of both."""

    __slots__ = ("state",)

    def __init__(self):
        self.state: Recorded | None = None

    def record(self, op, args: tuple, *, sources: tuple, options, backend: str, logits: torch.Tensor,
               check_range: bool = False) -> None:
        """Remember a call that just succeeded: op(logits, target, *args, compute_grad) (op: the custom
        op's packet); `sources` are the caller's class tensors (None or tensors) that `args` derive from.
        Calls the fast path cannot replay exactly are not recorded (and forget the previous one)."""
        if _is_compiling():  # a traced call leaves the eager record as it is
            return
        overload = native_autograd_overload(op)
        default = _backend.get_default_backend()
        if (overload is None or logits.dim() != 2 or type(logits) is not torch.Tensor
                or _peek_transform() is not None or "triton" in (backend, default)
                or any(s is not None and type(s) is not torch.Tensor for s in sources)):
            self.state = None
            return
        found = Recorded()
        found.op, found.args, found.sources = overload, args, sources
        found.versions = tuple(None if s is None else s._version for s in sources)
        found.options, found.backend, found.default = options, backend, default
        found.device, found.dtype, found.num_classes = logits.device, logits.dtype, logits.shape[1]
        found.check_range = check_range
        self.state = found

    def forget(self) -> None:
        if not _is_compiling():
            self.state = None

    def holds(self, logits, sources: tuple, options, backend) -> Recorded | None:
        """The record a call with these logits, class tensors, options and backend may replay, or None
        (the target is the op family's to guard)."""
        if _is_compiling():  # first, so that tracing a module's forward reads nothing here
            return None
        found = self.state
        if (found is None or type(logits) is not torch.Tensor or logits.dtype is not found.dtype
                or options is not found.options or backend != found.backend or logits.dim() != 2
                or logits.shape[1] != found.num_classes or logits.device != found.device
                or _backend.get_default_backend() != found.default or _peek_transform() is not None):
            return None
        for source, recorded, version in zip(sources, found.sources, found.versions):
            if source is not recorded or (source is not None and source._version != version):
                return None
        return found

    def __reduce__(self):  # a module's copy or pickle starts without a record (it holds op handles)
        return (RecordedCall, ())


def recorded_call(module) -> RecordedCall:
    """The loss module's RecordedCall, created on first use (so modules pickled without one get one)."""
    found = module.__dict__.get("_recorded")
    if found is None:
        found = module.__dict__["_recorded"] = RecordedCall()
    return found
