"""The repository's layering rules (docs/architecture.md), checked on the source with `ast`:
pycmlt/models and pycmlt/training never import a backend module, and the modules of pycmlt/ import
each other without cycles.

Every import counts, the ones inside functions included: a function-level import only postpones a
circle to the first call (the pycmlt.distributed <-> pycmlt.ops.contrastive circle was one), so it is
still a dependency in both directions. An import of a package (`import pycmlt`, `from pycmlt.ops
import x` where x is not a submodule) is an edge to its __init__.py, which is why submodules import
what they use from the module that defines it, never from the `pycmlt` facade."""
import ast
from pathlib import Path

import networkx
import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pycmlt"
BACKEND_MODULES = ("pycmlt.ops._backend", "pycmlt.kernels", "pycmlt._extension", "pycmlt._C", "triton")
# Modules of the package that are not Python source in pycmlt/: the compiled extension (csrc/).
NOT_SOURCE = ("pycmlt._C",)


def source_modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


MODULES = source_modules()


def imported_names(name: str, path: Path) -> set[str]:
    """Every module `name` imports (absolute dotted names, anywhere in the file)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name if path.name == "__init__.py" else name.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{base}" if base else package
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in MODULES or sub.startswith(NOT_SOURCE) else base)
    return found


def dependency(target: str) -> str | None:
    """The source module of pycmlt/ an imported name loads (itself or its closest package), or None."""
    if target.startswith(NOT_SOURCE):
        return None
    while target and target not in MODULES:
        target = target.rpartition(".")[0]
    return target or None


def import_graph() -> networkx.DiGraph:
    graph = networkx.DiGraph()
    for name, path in MODULES.items():
        graph.add_node(name)
        for target in imported_names(name, path):
            dep = dependency(target)
            if dep is not None and dep != name:
                graph.add_edge(name, dep)
    return graph


def test_the_package_imports_without_cycles():
    cycles = sorted(sorted(c) for c in networkx.strongly_connected_components(import_graph()) if len(c) > 1)
    assert cycles == [], f"import cycles (strongly connected modules): {cycles}"


@pytest.mark.parametrize("layer", ["pycmlt.models", "pycmlt.training"])
def test_models_and_training_never_import_a_backend(layer):
    offending = sorted(f"{name} imports {target}"
                       for name, path in MODULES.items() if name == layer or name.startswith(layer + ".")
                       for target in imported_names(name, path)
                       if any(target == b or target.startswith(b + ".") for b in BACKEND_MODULES))
    assert offending == []


def test_the_checks_see_cycles_and_backend_imports(tmp_path):
    """The parser finds what the rules look for: relative and function-level imports, submodule
    imports through `from package import module`."""
    path = tmp_path / "mod.py"
    path.write_text("def f():\n    from . import contrastive\n    from pycmlt.ops import _backend\n"
                    "import triton.language as tl\nfrom ..distributed import all_gather_with_grad\n")
    names = imported_names("pycmlt.ops.gathered", path)
    assert {"pycmlt.ops.contrastive", "pycmlt.ops._backend", "triton.language", "pycmlt.distributed"} <= names
    assert dependency("pycmlt.training.loop.train") == "pycmlt.training.loop" and dependency("pycmlt._C") is None
    graph = import_graph()
    assert graph.has_edge("pycmlt.ops.contrastive", "pycmlt.ops.gathered_contrastive")
    assert graph.has_edge("pycmlt", "pycmlt.training")  # the facade's lazy pycmlt.train
