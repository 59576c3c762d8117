"""`pycmlt tune`: a grid trained with select_on=val, chosen on val; the test split is never built."""
import json

import pytest
from run_helpers import forbid_test_split
from test_training import TINY_DATA

from pycmlt.cli import main
from pycmlt.training import TrainConfig
from pycmlt.training.tune import parse_grid, point_name


def tune_args(out, *extra):
    return ["tune", "--method", "ce", "--dataset", "synthetic", "--image-size", "16", "--data-options",
            json.dumps(TINY_DATA), "--backbone", "resnet20", "--epochs", "1", "--batch-size", "16", "--no-progress",
            "--warmup-epochs", "0", "--out", str(out), *extra]


@pytest.fixture
def test_split_forbidden(monkeypatch):
    forbid_test_split(monkeypatch, "pycmlt tune")


def test_tune_trains_the_grid_on_val_and_writes_the_best_config(tmp_path, capsys, test_split_forbidden):
    out = tmp_path / "tune"
    assert main(tune_args(out, "--grid", "lr=0.05,0.2", "--grid", "batch-size=16", "--criterion", "few")) == 0
    summary = json.loads((out / "tune.json").read_text())
    points = summary["points"]
    assert [p["overrides"] for p in points] == [{"lr": 0.05, "batch_size": 16}, {"lr": 0.2, "batch_size": 16}]
    for p in points:
        assert p["selected_epoch"] == 1 and {"top1", "few"} <= set(p["val"])
        run = out / p["run"]
        assert (run / "best.pt").exists() and (run / "val_metrics.json").exists()
        assert not (run / "metrics.json").exists() and not (run / "predictions.npz").exists()
    few = [p["val"]["few"] for p in points]
    assert summary["criterion"] == "few" and summary["best"]["index"] == few.index(max(few))
    best = TrainConfig.from_file(out / "best_config.json")
    assert best == TrainConfig.from_dict({**best.to_dict(), **points[summary["best"]["index"]]["overrides"]})
    assert best.select_on == "val" and best.method == "ce" and best.epochs == 1
    assert "best on val few" in capsys.readouterr().out
    # a second call reuses the finished points
    mtime = (out / points[0]["run"] / "val_metrics.json").stat().st_mtime_ns
    assert main(tune_args(out, "--grid", "lr=0.05,0.2", "--grid", "batch-size=16")) == 0
    assert (out / points[0]["run"] / "val_metrics.json").stat().st_mtime_ns == mtime


def test_grid_parsing_and_errors(tmp_path, capsys):
    assert parse_grid(["lr=0.1,0.05", "use-align=true,false", "cls-loss=none,ce"]) == \
        {"lr": [0.1, 0.05], "use_align": [True, False], "cls_loss": [None, "ce"]}
    assert point_name({"lr": 0.1, "cls_loss": None}) == "lr=0.1_cls_loss=None"
    assert point_name({}) == "defaults"  # the one point of an empty grid
    for grid, message in ((["lr"], "expects key=v1,v2"), (["nope=1"], "not a tunable TrainConfig key"),
                          (["out-dir=a,b"], "not a tunable"), (["epochs=two"], "'two' is not a valid int"),
                          (["lr=0.1,0.1"], "repeated value"), (["lr=1", "lr=2"], "given twice")):
        with pytest.raises(ValueError, match=message):
            parse_grid(grid)
    out = tmp_path / "tune"
    assert main(tune_args(out, "--grid", "epochs=0,1")) == 2          # every point is checked before training
    assert "epochs must be >= 1" in capsys.readouterr().err and not out.exists()
    assert main(tune_args(out, "--grid", "lr=0.1", "--eval-every", "1")) == 2
    assert "error: eval_every" in capsys.readouterr().err
