"""The private torch APIs pycmlt relies on, checked so that a torch upgrade that removes or changes one
fails here, with the API and the code that uses it named, instead of somewhere deep in a training run.

PRIVATE_APIS lists each one with what pycmlt needs from it; test_every_private_torch_api_is_listed
scans pycmlt/ (with ast) so that a new use cannot slip in unlisted.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import torch

import pycmlt.ops  # noqa: F401  (registers the pycmlt custom ops)

PACKAGE = Path(__file__).resolve().parents[1] / "pycmlt"

# Private members of torch objects reached through a value rather than the torch module itself
# (t._version on a tensor, op._qualified_op_name on an op): the scan matches them by name.
PRIVATE_MEMBERS = {
    "_version": "torch.Tensor._version",
    "_base": "torch.Tensor._base",
    "_cdata": "torch.Tensor._cdata",
    "_qualified_op_name": "torch._ops.OpOverloadPacket._qualified_op_name",
    "_schema": "torch._ops.OpOverload._schema",
    "_overloadname": "torch._ops.OpOverload._overloadname",
    "_opname": "torch._ops.OpOverload._opname",
}


def _check_auto_dispatch_below_autograd():
    guard = torch._C._AutoDispatchBelowAutograd
    x = torch.ones(3, requires_grad=True)
    with guard():  # constructed without arguments, used as a context manager
        below = x * 2
    assert below.grad_fn is None and not below.requires_grad, \
        "ops called inside it must skip the autograd key (no grad_fn on the result)"
    assert (x * 2).grad_fn is not None, "autograd must be back on after the block"


def _check_tensor_version():
    t = torch.zeros(3)
    before = t._version
    assert isinstance(before, int), f"must be an int, got {type(before).__name__}"
    _ = t + 1
    assert t._version == before, "an out-of-place op must not change it"
    t.add_(1)
    assert t._version > before, "an in-place op must increase it"


def _check_qualified_op_name():
    assert torch.ops.aten.mul._qualified_op_name == "aten::mul"
    # pycmlt keys its registered references by the name it registered (ops/_registration.py).
    assert torch.ops.pycmlt.cb_cross_entropy_triton._qualified_op_name == "pycmlt::cb_cross_entropy_triton"


def _check_functorch_interpreter_stack():
    peek = torch._C._functorch.peek_interpreter_stack
    assert peek() is None, "must be None outside torch.func transforms"
    seen = []

    def f(x):
        seen.append(peek())
        return (x * x).sum()

    torch.func.grad(f)(torch.ones(2))
    assert seen and seen[0] is not None, "must be set inside a torch.func transform"


def _check_op_schema_arguments():
    names = [a.name for a in torch.ops.aten.mul.Tensor._schema.arguments]
    assert names == ["self", "other"], names
    fused = torch.ops.pycmlt.fused_linear_cb_cross_entropy.default._schema.arguments
    assert all(isinstance(a.name, str) for a in fused), "each argument must have its schema name"


@dataclass(frozen=True)
class PrivateApi:
    name: str
    needed_for: str
    check: Callable[[], None]


PRIVATE_APIS = {api.name: api for api in (
    PrivateApi("torch._C._AutoDispatchBelowAutograd",
               "the eager fast path of the fused losses: the op runs below autograd inside a plain "
               "autograd.Function (ops/_registration.py call_fused_loss)",
               _check_auto_dispatch_below_autograd),
    PrivateApi("torch.Tensor._version",
               "detecting an input modified in place before a create_graph backward (ops/_registration.py), "
               "and when the word table changed (models/cmltnet.py word_index)",
               _check_tensor_version),
    PrivateApi("torch._C._functorch",
               "peek_interpreter_stack: telling whether a call runs under a torch.func transform, where the C++ "
               "autograd of the CE/BCE ops cannot run and the Python autograd.Function path is taken "
               "(ops/_registration.py call_fused_loss)",
               _check_functorch_interpreter_stack),
    PrivateApi("torch._ops.OpOverload._schema",
               "the argument names of a fused-linear op, so its autograd reads the positions of the row scale "
               "and the reduction by name, not by magic index (ops/fused_linear.py _Autograd)",
               _check_op_schema_arguments),
    PrivateApi("torch._ops.OpOverloadPacket._qualified_op_name",
               "finding the registered reference formula of a fused loss op (ops/_registration.py)",
               _check_qualified_op_name),
)}


def _dotted(node: ast.AST, aliases: dict[str, str]) -> str | None:
    """'torch._C._X' for the attribute chain torch._C._X (through import aliases), else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name) or node.id not in aliases:
        return None
    return ".".join([aliases[node.id], *reversed(parts)])


def _up_to_last_private(dotted: str) -> str | None:
    parts = dotted.split(".")
    private = [i for i, p in enumerate(parts) if p.startswith("_") and not p.startswith("__")]
    return ".".join(parts[:private[-1] + 1]) if private else None


def _private_uses_in(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    aliases = {"torch": "torch"}
    uses = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "torch":
                    aliases[alias.asname or "torch"] = alias.name if alias.asname else "torch"
                    if (name := _up_to_last_private(alias.name)):
                        uses.append((name, node.lineno))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "torch":
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                aliases[alias.asname or alias.name] = full
                if (name := _up_to_last_private(full)):
                    uses.append((name, node.lineno))
    inner = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        if node.attr in PRIVATE_MEMBERS:
            uses.append((PRIVATE_MEMBERS[node.attr], node.lineno))
        elif id(node) not in inner and (dotted := _dotted(node, aliases)) and (name := _up_to_last_private(dotted)):
            uses.append((name, node.lineno))
    return uses


def _private_uses() -> dict[str, list[str]]:
    """Every private torch API used in pycmlt/ -> ['pycmlt/ops/x.py:12', ...]."""
    found: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for name, line in _private_uses_in(path):
            found.setdefault(name, []).append(f"{path.relative_to(PACKAGE.parent)}:{line}")
    return found


def test_every_private_torch_api_is_listed():
    unlisted = {name: where for name, where in _private_uses().items() if name not in PRIVATE_APIS}
    assert not unlisted, ("private torch APIs used in pycmlt/ without a check in tests/test_private_torch_api.py "
                          f"(add each to PRIVATE_APIS with what it must do, or use a public API): {unlisted}")


def test_the_scan_finds_private_apis(tmp_path):
    source = tmp_path / "sample.py"
    source.write_text("import torch\nimport torch.distributed as dist\nfrom torch._dynamo import config\n"
                      "with torch._C._AutoDispatchBelowAutograd():\n    pass\n"
                      "dist._all_gather_base(x, y)\nv = t._version\nw = torch.nn.functional.relu(t)\n")
    assert sorted(_private_uses_in(source)) == [
        ("torch.Tensor._version", 7), ("torch._C._AutoDispatchBelowAutograd", 4), ("torch._dynamo", 3),
        ("torch.distributed._all_gather_base", 6)]


@pytest.mark.parametrize("name", sorted(PRIVATE_APIS))
def test_private_torch_api_still_behaves_as_pycmlt_needs(name):
    api = PRIVATE_APIS[name]
    where = _private_uses().get(name)
    if not where:
        pytest.skip(f"{name} is no longer used in pycmlt/: remove it from PRIVATE_APIS")
    try:
        api.check()
    except Exception as exc:  # AttributeError (removed), TypeError (signature changed), AssertionError
        pytest.fail(f"private torch API {name} changed in torch {torch.__version__}: {type(exc).__name__}: {exc}. "
                    f"pycmlt uses it at {', '.join(where)} for {api.needed_for}.", pytrace=False)
