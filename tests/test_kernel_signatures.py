"""The Triton kernels say what their arguments are, as the C++ launch structs do: no one- or two-letter
argument names (a bare `M` once meant margins in one kernel and a row count in another), and every
pointer argument of a kernel is named `*_ptr` with a shape comment on its line (`logits_ptr,  # [n_rows, ...]`).
Checked on the source with ast, so it needs no Triton."""
import ast
from pathlib import Path

import pytest

KERNELS = sorted((Path(__file__).resolve().parents[1] / "pycmlt" / "kernels").glob("*.py"))


def _jit_functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef) and any(
                isinstance(d, ast.Attribute) and d.attr == "jit" for d in node.decorator_list):
            yield node


@pytest.mark.parametrize("path", [p for p in KERNELS if p.name != "__init__.py"], ids=lambda p: p.name)
def test_triton_arguments_are_named_and_pointers_carry_shapes(path):
    lines = path.read_text().splitlines()
    functions = list(_jit_functions(path))
    assert functions, f"no @triton.jit function in {path.name}"
    problems = []
    for fn in functions:
        for arg in fn.args.args:
            if len(arg.arg) <= 2:
                problems.append(f"{fn.name}({arg.arg}): name says nothing; use e.g. logits_ptr, n_rows, n_classes")
        if not fn.name.endswith("_kernel"):
            continue
        pointers = [arg for arg in fn.args.args if arg.arg.endswith("_ptr")]
        if not pointers:
            problems.append(f"{fn.name}: no *_ptr argument (pointer arguments are named *_ptr)")
        for arg in pointers:
            if "# [" not in lines[arg.lineno - 1]:
                problems.append(f"{fn.name}({arg.arg}): no shape comment (`# [n_rows, n_classes] ...`) on its line")
    assert not problems, f"{path.name}:\n" + "\n".join(problems)
