"""Model selection on val (TrainConfig.select_on="val"): best.pt holds the best val epoch, the test
metrics come from it, test is evaluated once at the end, a killed run keeps its best epoch, and the
second-stage methods select too. Per-sample test predictions are written for paired comparisons."""
import json

import numpy as np
import pytest
import torch
from run_helpers import forbid_test_split, kill_in_epoch
from test_training import read_metrics, tiny_config

import pycmlt
from pycmlt.cli import build_parser
from pycmlt.cli.config_args import config_from_args
from pycmlt.evaluation.predictions import load_predictions
from pycmlt.training import TrainConfig, load_model
from pycmlt.training import checkpoint as ckpt
from pycmlt.training import epoch_loop, model_evaluation


def scripted_val_scores(monkeypatch, top1s):
    """split_scores returns the given val top-1 per epoch (test scoring is left alone)."""
    real, calls = model_evaluation.split_scores, []

    def fake(model, config, dataset, *args):
        if dataset.split != "val":
            return real(model, config, dataset, *args)
        calls.append(dataset.split)
        return {"top1": top1s[len(calls) - 1], "many": None, "medium": None, "few": 0.5}

    monkeypatch.setattr(model_evaluation, "split_scores", fake)
    return calls


def count_test_predictions(monkeypatch):
    real, splits = model_evaluation.predict, []

    def counting(model, dataset, **kw):
        splits.append(dataset.split)
        return real(model, dataset, **kw)

    monkeypatch.setattr(model_evaluation, "predict", counting)
    return splits


def weights(state: dict) -> dict:
    return {k: v for k, v in state.items() if torch.is_floating_point(v)}


def same_weights(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in weights(a))


def test_the_best_val_epoch_is_tested_not_the_last(tmp_path, monkeypatch):
    scripted_val_scores(monkeypatch, [0.9, 0.5])
    predicted_splits = count_test_predictions(monkeypatch)
    result = pycmlt.train(tiny_config(tmp_path, select_on="val", epochs=2))
    out = result.out_dir
    m = read_metrics(out)
    assert m["selected_epoch"] == 1 and m["val"]["top1"] == 0.9
    assert [h["val_top1"] for h in result.history] == [0.9, 0.5] and [h["val_few"] for h in result.history] == [0.5] * 2
    best, last = ckpt.load(out / "best.pt"), ckpt.load(out / "checkpoint.pt")
    assert best["epoch"] == 1 and last["epoch"] == 2
    final = load_model(out)[0].state_dict()
    assert same_weights(final, best["model"]) and not same_weights(final, last["model"])
    assert predicted_splits == ["test"]  # test evaluated once, at the end


def test_select_on_val_for_real_and_predictions_file(tmp_path):
    result = pycmlt.train(tiny_config(tmp_path, select_on="val", epochs=2))
    m = read_metrics(result.out_dir)
    val_top1 = [h["val_top1"] for h in result.history]
    assert m["selected_epoch"] == 1 + int(np.argmax(val_top1)) and m["val"]["top1"] == max(val_top1)
    assert all(0 <= h["val_top1"] <= 1 and "val_few" in h for h in result.history)
    assert ckpt.load(result.out_dir / "best.pt")["epoch"] == m["selected_epoch"]
    p = load_predictions(result.out_dir / "predictions.npz")
    assert len(p["item_keys"]) == 36 and p["correct"].mean() == pytest.approx(m["top1"])
    assert list(p["item_keys"][:3]) == ["0", "1", "2"]


def test_a_killed_run_keeps_its_best_epoch(tmp_path, monkeypatch):
    straight_dir, killed_dir = tmp_path / "straight", tmp_path / "killed"
    scripted_val_scores(monkeypatch, [0.9, 0.5, 0.4])
    pycmlt.train(tiny_config(tmp_path, select_on="val", epochs=3, out_dir=str(straight_dir)))

    scripted_val_scores(monkeypatch, [0.9, 0.5, 0.4])
    real_epoch = kill_in_epoch(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        pycmlt.train(tiny_config(tmp_path, select_on="val", epochs=3, out_dir=str(killed_dir)))
    assert ckpt.load(killed_dir / "checkpoint.pt")["epoch"] == 2
    monkeypatch.setattr(epoch_loop, "train_epoch", real_epoch)
    scripted_val_scores(monkeypatch, [0.4])  # only epoch 3 is trained (and scored) again
    pycmlt.train(tiny_config(tmp_path, select_on="val", epochs=3, out_dir=str(killed_dir)), resume=True)
    a, b = read_metrics(straight_dir), read_metrics(killed_dir)
    assert a["selected_epoch"] == b["selected_epoch"] == 1 and a["top1"] == b["top1"]
    assert same_weights(load_model(straight_dir)[0].state_dict(), load_model(killed_dir)[0].state_dict())


def test_second_stage_methods_select_on_val(tmp_path):
    stage1 = pycmlt.train(tiny_config(tmp_path, out_dir=str(tmp_path / "ce"), epochs=1))
    crt = pycmlt.train(tiny_config(tmp_path, method="crt", stage1=str(stage1.out_dir), crt_epochs=2, select_on="val",
                                   out_dir=str(tmp_path / "crt")))
    m = read_metrics(crt.out_dir)
    assert m["selected_epoch"] in (1, 2) and len([h["val_top1"] for h in crt.history]) == 2
    assert ckpt.load(crt.out_dir / "best.pt")["epoch"] == m["selected_epoch"]
    tau = pycmlt.train(tiny_config(tmp_path, method="tau-norm", stage1=str(stage1.out_dir), select_on="val",
                                   out_dir=str(tmp_path / "tau")))
    m = read_metrics(tau.out_dir)
    assert m["selected_epoch"] is None and 0 <= m["val"]["top1"] <= 1  # nothing trained: nothing to choose


def test_selection_options_are_checked():
    with pytest.raises(ValueError, match="select_on must be one of"):
        TrainConfig(select_on="best")
    with pytest.raises(ValueError, match="eval_every"):
        TrainConfig(select_on="val", eval_every=1)
    with pytest.raises(ValueError, match="evaluate_test=False needs select_on='val'"):
        pycmlt.train(TrainConfig(), evaluate_test=False)
    args = build_parser().parse_args(["train", "--select-on", "val", "--out", "x"])
    assert config_from_args(args).select_on == "val"


def test_val_only_run_never_builds_the_test_split(tmp_path, monkeypatch):
    forbid_test_split(monkeypatch, "a val-only run")
    result = pycmlt.train(tiny_config(tmp_path, select_on="val", epochs=1), evaluate_test=False)
    saved = json.loads((result.out_dir / "val_metrics.json").read_text())
    assert saved["selected_epoch"] == 1 and saved["val"]["top1"] == result.metrics["val"]["top1"]
    assert not (result.out_dir / "metrics.json").exists() and not (result.out_dir / "predictions.npz").exists()
