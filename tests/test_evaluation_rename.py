"""pycmlt.eval, the old name of pycmlt.evaluation (it shadowed the builtin `eval`), and its modules
keep working for one release: importing them warns, naming the new module, and gives
pycmlt.evaluation's own objects. Nothing inside the project imports the old name."""
import ast
import importlib
import sys
from pathlib import Path

import pytest

import pycmlt
from pycmlt import evaluation
from pycmlt.evaluation import classification_metrics, paired
from pycmlt.ops._deprecation import _MovedModules

ROOT = Path(__file__).resolve().parents[1]


def _old_modules() -> list[str]:
    return [name for name in sys.modules if name == "pycmlt.eval" or name.startswith("pycmlt.eval.")]


@pytest.fixture
def fresh(monkeypatch):
    """This process as if pycmlt.eval had never been imported; put back as it was afterwards."""
    monkeypatch.setattr(sys, "meta_path", [f for f in sys.meta_path if not isinstance(f, _MovedModules)])
    saved = {name: sys.modules.pop(name) for name in _old_modules()}
    attribute = vars(pycmlt).pop("eval", None)
    yield
    for name in _old_modules():
        del sys.modules[name]
    sys.modules.update(saved)
    vars(pycmlt).pop("eval", None)
    if attribute is not None:
        vars(pycmlt)["eval"] = attribute


def test_the_old_package_warns_and_gives_the_new_objects(fresh):
    with pytest.warns(DeprecationWarning, match=r"pycmlt\.eval is deprecated.*use pycmlt\.evaluation instead"):
        old = importlib.import_module("pycmlt.eval")
    assert old.word_inference_metrics is evaluation.word_inference_metrics
    assert old.WordInferenceMetrics is evaluation.WordInferenceMetrics
    assert old.__all__ == evaluation.__all__
    with pytest.raises(AttributeError):
        old.no_such_name


def test_the_old_modules_warn_and_are_the_new_modules(fresh):
    with pytest.warns(DeprecationWarning, match=r"pycmlt\.eval is deprecated"):
        importlib.import_module("pycmlt.eval")
    with pytest.warns(DeprecationWarning, match=r"pycmlt\.eval\.longtail is deprecated.*"
                                                r"use pycmlt\.evaluation\.classification_metrics instead"):
        from pycmlt.eval.longtail import shot_groups
    with pytest.warns(DeprecationWarning, match=r"pycmlt\.eval\.paired is deprecated.*pycmlt\.evaluation\.paired"):
        from pycmlt.eval.paired import paired_bootstrap
    assert shot_groups is classification_metrics.shot_groups and paired_bootstrap is paired.paired_bootstrap
    assert sys.modules["pycmlt.eval.longtail"] is classification_metrics and pycmlt.eval.paired is paired
    assert classification_metrics.__name__ == "pycmlt.evaluation.classification_metrics"
    assert not hasattr(evaluation, "longtail")
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("pycmlt.eval.no_such_module")


def test_the_old_attribute_of_the_facade(fresh):
    with pytest.warns(DeprecationWarning, match=r"pycmlt\.eval is deprecated"):
        assert pycmlt.eval.word_recall_at_k is evaluation.word_recall_at_k
    assert "eval" not in pycmlt.__all__ and "evaluation" in pycmlt.__all__


def test_nothing_in_the_project_imports_the_old_name():
    found = []
    for folder in ("pycmlt", "benchmarks"):
        for path in (ROOT / folder).rglob("*.py"):
            if path.parent == ROOT / "pycmlt" / "eval" or path == ROOT / "pycmlt" / "__init__.py":
                continue  # the alias itself, and the facade's deprecated pycmlt.eval attribute
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                found += [f"{path.relative_to(ROOT)}:{node.lineno}: {name}" for name in names
                          if name == "pycmlt.eval" or name.startswith("pycmlt.eval.")]
    assert found == []
