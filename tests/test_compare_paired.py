"""`pycmlt compare` over several data splits and seeds with a paired comparison against a reference."""
import json

import numpy as np
import pytest
from test_training import TINY_DATA

from pycmlt.cli import main


def compare_args(out, *extra):
    return ["compare", "--dataset", "synthetic", "--image-size", "16", "--data-options", json.dumps(TINY_DATA),
            "--backbone", "resnet20", "--epochs", "1", "--batch-size", "16", "--word-dim", "16", "--no-progress",
            "--out", str(out), *extra]


def test_compare_over_data_splits_writes_the_paired_block(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(compare_args(out, "--methods", "ce", "balanced-softmax", "--data-seeds", "0", "1",
                             "--seeds", "0", "1", "--reference", "ce", "--bootstrap", "300")) == 0
    summary = json.loads((out / "compare.json").read_text())
    assert summary["data_seeds"] == [0, 1] and summary["seeds"] == [0, 1]
    names = [f"data{d}-seed{s}" for d in (0, 1) for s in (0, 1)]
    for method in ("ce", "balanced-softmax"):
        for name in names:
            config = json.loads((out / method / name / "config.json").read_text())
            assert f"data{config['data_seed']}-seed{config['seed']}" == name
            assert (out / method / name / "predictions.npz").exists()
    paired = summary["paired"]
    assert list(paired) == ["balanced-softmax"] and paired["balanced-softmax"]["reference"] == "ce"
    metrics = {m: [json.loads((out / m / n / "metrics.json").read_text()) for n in names]
               for m in ("ce", "balanced-softmax")}
    for key in ("top1", "few"):
        block = paired["balanced-softmax"][key]
        expected = np.mean([b[key] - a[key] for a, b in zip(metrics["ce"], metrics["balanced-softmax"])])
        assert block["delta"] == pytest.approx(expected)
        lo, hi = block["ci"]
        assert -1 <= lo <= hi <= 1
    md = (out / "compare.md").read_text()
    assert "Paired comparison with ce" in md and "| balanced-softmax |" in md and "data splits [0, 1]" in md


def test_a_reference_outside_the_methods_is_refused_before_training(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(compare_args(out, "--methods", "ce", "--reference", "cmltnet")) == 2
    assert "error: reference 'cmltnet' must be one of the compared methods" in capsys.readouterr().err
    assert main(compare_args(out, "--methods", "ce", "ldam-drw", "--data-seeds", "1", "1")) == 2
    assert "data_seeds must be a non-empty list of distinct ints" in capsys.readouterr().err
    assert not out.exists()


def test_compare_trains_each_method_with_its_tuned_overrides(tmp_path, capsys):
    tune_base = [a if a != "compare" else "tune" for a in compare_args(tmp_path / "tune-ce")]
    assert main([*tune_base, "--method", "ce", "--grid", "lr=0.3,0.01"]) == 0
    chosen = json.loads((tmp_path / "tune-ce" / "tune.json").read_text())["best"]["overrides"]["lr"]
    out = tmp_path / "cmp"
    assert main(compare_args(out, "--methods", "ce", "balanced-softmax", "--lr", "0.05",
                             "--tuned", f"ce={tmp_path / 'tune-ce'}")) == 0
    assert json.loads((out / "ce" / "seed0" / "config.json").read_text())["lr"] == chosen
    assert json.loads((out / "balanced-softmax" / "seed0" / "config.json").read_text())["lr"] == 0.05
    summary = json.loads((out / "compare.json").read_text())
    assert summary["tuned"]["ce"]["overrides"] == {"lr": chosen} and summary["tuned"]["ce"]["points"] == 2
    assert "Hyper-parameters chosen on val" in (out / "compare.md").read_text()


def test_a_tuning_of_another_method_is_refused_before_training(tmp_path, capsys):
    tune_dir = tmp_path / "tune"
    tune_dir.mkdir()
    (tune_dir / "tune.json").write_text(json.dumps({"method": "ce", "dataset": "synthetic",
                                                     "best": {"overrides": {"lr": 0.1}, "val": {}}}))
    out = tmp_path / "cmp"
    assert main(compare_args(out, "--methods", "ce", "ldam-drw", "--tuned", f"ldam-drw={tune_dir}")) == 2
    assert "tunes 'ce' on 'synthetic', not 'ldam-drw' on 'synthetic'" in capsys.readouterr().err
    assert main(compare_args(out, "--methods", "ce", "--tuned", f"ce={tmp_path / 'nowhere'}")) == 2
    assert "no tune.json at" in capsys.readouterr().err
    assert not out.exists()
