"""`pycmlt protocol`: equal tuning budgets on val, the reference chosen on val, then the paired compare."""
import json

import pytest
from test_compare_paired import compare_args

from pycmlt.cli import main
from pycmlt.training import TrainConfig
from pycmlt.training.protocol import choose_reference, load_grids, run_protocol


def protocol_args(out, grids, *extra):
    args = compare_args(out, *extra)
    return ["protocol", *args[1:], "--grids", str(grids)]


def test_protocol_tunes_every_method_then_compares_against_the_best_baseline_on_val(tmp_path, capsys):
    grids = tmp_path / "grids.json"
    grids.write_text(json.dumps({"ce": {"lr": [0.3, 0.01]}, "balanced-softmax": {"weight_decay": [0.0, 0.001]}}))
    out = tmp_path / "p"
    assert main(protocol_args(out, grids, "--methods", "ce", "balanced-softmax", "--data-seeds", "0", "1",
                              "--seeds", "0", "--criterion", "top1", "--bootstrap", "200")) == 0
    record = json.loads((out / "protocol.json").read_text())
    tuned = record["tuned"]
    assert set(tuned) == {"ce", "balanced-softmax"} and all(t["points"] == 2 for t in tuned.values())
    for method, t in tuned.items():  # the tuned point is the best val point of that method's own tune.json
        points = json.loads((out / "tune" / method / "tune.json").read_text())["points"]
        assert max(p["val"]["top1"] for p in points) == t["val"]["top1"]
        for name in ("data0-seed0", "data1-seed0"):
            config = json.loads((out / "compare" / method / name / "config.json").read_text())
            assert config["select_on"] == "val"
            assert all(config[k] == v for k, v in t["overrides"].items())
        assert not (out / "tune" / method / next(iter(points))["run"] / "predictions.npz").exists()
    best = max(tuned, key=lambda m: (tuned[m]["val"]["top1"], tuned[m]["val"].get("few") or -1))
    assert record["reference"] == best
    paired = json.loads((out / "compare" / "compare.json").read_text())["paired"]
    assert list(paired) == [m for m in ("ce", "balanced-softmax") if m != best]


def test_unequal_budgets_are_refused(tmp_path):
    grids = tmp_path / "grids.json"
    grids.write_text(json.dumps({"ce": {"lr": [0.1, 0.05]}, "cmltnet": {"lr": [0.1], "lambda_infer": [0.1, 0.3, 1]}}))
    with pytest.raises(ValueError, match="same tuning budget"):
        load_grids(grids, ["ce", "cmltnet"])
    with pytest.raises(ValueError, match=r"no grid for \['ldam-drw'\]"):
        load_grids(grids, ["ce", "ldam-drw"])


def test_the_reference_is_a_baseline_chosen_on_val():
    tuned = {"ce": {"val": {"top1": 0.5, "few": 0.1}}, "balanced-softmax": {"val": {"top1": 0.45, "few": 0.2}},
             "cmltnet": {"val": {"top1": 0.9, "few": 0.9}}}
    assert choose_reference(tuned, "few") == "balanced-softmax"
    assert choose_reference(tuned, "top1") == "ce"
    with pytest.raises(ValueError, match="at least one baseline"):
        choose_reference({"cmltnet": tuned["cmltnet"]}, "few")


def test_grid_values_are_read_as_json_and_checked_before_anything_trains(tmp_path):
    grids = tmp_path / "grids.json"
    options = {"num_classes": 4, "imbalance": 10.0}  # a dict value: its commas must not split it
    grids.write_text(json.dumps({"ce": {"data_options": [options, {**options, "imbalance": 5.0}]},
                                 "balanced-softmax": {"lr": ["fast", 0.1]}}))
    loaded = load_grids(grids, ["ce", "balanced-softmax"])
    assert loaded["ce"] == {"data_options": [options, {**options, "imbalance": 5.0}]}
    base = TrainConfig(dataset="synthetic", out_dir=str(tmp_path / "p"))
    with pytest.raises(TypeError, match="lr must be a number"):
        run_protocol(base, ["ce", "balanced-softmax"], loaded, tmp_path / "p", seeds=[0], data_seeds=[0])
    assert not (tmp_path / "p").exists()
    grids.write_text(json.dumps({"ce": {"lr": [0.1, 0.1]}, "balanced-softmax": {"out_dir": ["a", "b"]}}))
    with pytest.raises(ValueError, match="repeated value"):
        load_grids(grids, ["ce"])
    with pytest.raises(ValueError, match="not a tunable TrainConfig key"):
        load_grids(grids, ["balanced-softmax"])


def test_the_tuned_run_of_the_tuning_split_is_reused_with_the_same_result(tmp_path):
    """The compare run (tuning split, base seed) starts from a copy of the tuned point's tuning run and
    reads test once; its metrics equal those of the same run trained from scratch."""
    from pycmlt.training.loop import train
    from pycmlt.training.protocol import reuse_tuning_runs
    from test_compare_paired import TINY_DATA

    base = TrainConfig(dataset="synthetic", image_size=16, data_options=TINY_DATA, backbone="resnet20", epochs=2,
                       batch_size=16, word_dim=16, progress=False, select_on="val")
    out = tmp_path / "p"
    point = {"lr": 0.05}
    train(base.replace(method="ce", out_dir=str(out / "tune" / "ce" / "lr=0.05"), **point), evaluate_test=False)
    tuned = {"ce": {"overrides": point}}
    assert reuse_tuning_runs(base, tuned, out, seeds=[1], data_seeds=[0]) == []        # base seed not compared
    assert reuse_tuning_runs(base, {"ce": {"overrides": {"lr": 0.1}}}, out, seeds=[0], data_seeds=[0]) == []
    assert reuse_tuning_runs(base.replace(epochs=3), tuned, out, seeds=[0], data_seeds=[0]) == []  # config differs
    assert reuse_tuning_runs(base, tuned, out, seeds=[0], data_seeds=[0, 1]) == ["ce"]
    copy = out / "compare" / "ce" / "data0-seed0"
    assert (copy / "checkpoint.pt").exists() and not (copy / "val_metrics.json").exists()
    assert reuse_tuning_runs(base, tuned, out, seeds=[0], data_seeds=[0, 1]) == []     # never over a started run
    reused = train(base.replace(method="ce", out_dir=str(copy), **point), resume=True).metrics
    fresh = train(base.replace(method="ce", out_dir=str(tmp_path / "fresh"), **point)).metrics
    for key in ("top1", "few", "many", "selected_epoch", "per_class"):
        assert reused[key] == fresh[key], key



def test_a_second_stage_is_tuned_through_its_stage_one_and_can_be_the_reference(tmp_path):
    """crt@ce gets no grid: its val score is cRT with its defaults on ce's tuned-point tuning run (test
    never built), it counts as a baseline, and its compare run builds on ce's compare run."""
    grids = tmp_path / "grids.json"
    grids.write_text(json.dumps({"ce": {"lr": [0.3, 0.01]}, "balanced-softmax": {"weight_decay": [0.0, 0.001]}}))
    out = tmp_path / "p"
    assert main(protocol_args(out, grids, "--methods", "ce", "balanced-softmax", "crt@ce", "--data-seeds", "0",
                              "--seeds", "0", "--bootstrap", "200")) == 0
    record = json.loads((out / "protocol.json").read_text())
    crt = record["tuned"]["crt@ce"]
    assert crt["overrides"] == {} and crt["tuned_through"] == "ce" and crt["points"] == 2
    ce_point = json.loads((out / "tune" / "ce" / "tune.json").read_text())["best"]["run"]
    tuning_run = out / "tune" / "crt-on-ce" / "defaults"
    config = json.loads((tuning_run / "config.json").read_text())
    assert config["method"] == "crt" and config["stage1"] == str(out / "tune" / "ce" / ce_point)
    assert not (tuning_run / "predictions.npz").exists()              # val only: test never built
    assert crt["val"] == json.loads((out / "tune" / "crt-on-ce" / "tune.json").read_text())["best"]["val"]
    tuned = record["tuned"]
    best = max(tuned, key=lambda m: (tuned[m]["val"]["few"] if tuned[m]["val"].get("few") is not None else -1,
                                     tuned[m]["val"]["top1"]))
    assert record["reference"] == best
    compared = json.loads((out / "compare" / "crt-on-ce" / "seed0" / "config.json").read_text())
    assert compared["stage1"] == str(out / "compare" / "ce" / "seed0")


def test_second_stage_names_are_checked_before_anything_trains(tmp_path):
    from pycmlt.training.protocol import check_protocol_methods

    with pytest.raises(ValueError, match=r"stage one 'ldam-drw', which must also be one of the methods"):
        check_protocol_methods(["ce", "crt@ldam-drw"])
    for name in ("crt", "cmltnet:no-align"):
        with pytest.raises(ValueError, match="not variants or bare second stages"):
            check_protocol_methods(["ce", name])
    with pytest.raises(ValueError, match="unknown method"):
        check_protocol_methods(["ce", "crt@nope"])
    check_protocol_methods(["ldam-drw", "cmltnet", "crt@ldam-drw", "crt@cmltnet"])
    grids = tmp_path / "grids.json"
    grids.write_text(json.dumps({"ce": {"lr": [0.1, 0.05]}, "crt@ce": {"lr": [0.1, 0.05]}}))
    with pytest.raises(ValueError, match=r"\['crt@ce'\] are tuned through their stage one"):
        load_grids(grids, ["ce", "crt@ce"])
    grids.write_text(json.dumps({"ce": {"lr": [0.1, 0.05]}}))
    assert load_grids(grids, ["ce", "crt@ce"]) == {"ce": {"lr": [0.1, 0.05]}}


def test_a_second_stage_on_a_word_model_is_not_a_baseline():
    tuned = {"ldam-drw": {"val": {"top1": 0.3, "few": 0.1}}, "crt@ldam-drw": {"val": {"top1": 0.3, "few": 0.2}},
             "cmltnet": {"val": {"top1": 0.3, "few": 0.3}}, "crt@cmltnet": {"val": {"top1": 0.4, "few": 0.4}}}
    assert choose_reference(tuned, "few") == "crt@ldam-drw"
