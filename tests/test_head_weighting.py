"""benchmarks/analysis/head_weighting.py rescores a finished CMLTNet with classifier + w * head: at w = 1 it
is the model as trained, w is chosen on val only, and a run without the named head is refused."""
import json

import pytest
import torch
from test_training import tiny_config

import pycmlt
from benchmarks.analysis import head_weighting
from pycmlt.evaluation.classification_metrics import longtail_accuracy
from pycmlt.evaluation.predictions import PREDICTIONS, load_predictions
from pycmlt.training.checkpoint import load_run


@pytest.fixture(scope="module")
def semantic_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("head-weighting")
    config = tiny_config(tmp, method="cmltnet", semantic_head=True, select_on="val", epochs=2)
    return pycmlt.train(config).out_dir


def test_weight_one_is_the_model_and_val_chooses_the_weight(semantic_run, tmp_path):
    out = tmp_path / "out"
    assert head_weighting.main([str(semantic_run), "--head", "semantic", "--out", str(out)]) == 0
    result = json.loads((out / "head-weighting.json").read_text())
    run = result["runs"][str(semantic_run)]
    assert set(run["val"]) == set(run["test"]) == {str(w) for w in head_weighting.WEIGHTS}

    _, meta, _ = load_run(semantic_run)
    saved = load_predictions(semantic_run / PREDICTIONS)  # what the run itself predicted on test
    counts = torch.as_tensor(meta["class_counts"], dtype=torch.float32)
    trained = longtail_accuracy(torch.as_tensor(saved["predicted"]), torch.as_tensor(saved["labels"]).long(), counts)
    assert run["test"]["1.0"]["top1"] == pytest.approx(trained.top1)
    assert run["test"]["1.0"]["few"] == pytest.approx(trained.to_dict()["few"])

    best = max(head_weighting.WEIGHTS, key=lambda w: (round(run["val"][str(w)]["few"], 9), run["val"][str(w)]["top1"]))
    assert run["chosen_weight"] == best
    table = (out / "head-weighting.md").read_text()
    assert "| 1 |" in table and "w chosen on val per run" in table


def test_a_run_without_the_head_is_refused(semantic_run, tmp_path):
    with pytest.raises(ValueError, match="no 'text_anchors' head"):
        head_weighting.main([str(semantic_run), "--head", "text_anchors", "--out", str(tmp_path / "out")])
