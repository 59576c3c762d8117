"""Nothing silently wrong in a training run (issue 13): options validated up front, one run per
folder, divergence stops the run, --resume refuses a different config, bad data fails before the
first step, CLI errors are one `error:` line, progress is plain lines off a terminal."""
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys

import pytest
import torch

import pycmlt
from pycmlt.cli import build_parser, main
from pycmlt.errors import ConfigMismatchError, RunLockedError, TrainingDivergedError
from pycmlt.training import TrainConfig
from pycmlt.training import checkpoint as ckpt
from pycmlt.training import epoch_loop
from pycmlt.training.config import RULES
from pycmlt.training.objective import CMLTNetObjective
from pycmlt.training.run_lock import RunLock
from data_fixtures import write_image
from test_training import ROOT, tiny_config


# ------------------------------------------------------------------------------------ options

@pytest.mark.parametrize("change, kind, message", [
    (dict(lr=float("nan")), ValueError, "lr must be finite"),
    (dict(word_topk=(0,)), ValueError, "word_topk must hold integers >= 1"),
    (dict(word_dim=0), ValueError, "word_dim must be >= 1"),
    (dict(align_temperature=0.0), ValueError, "align_temperature must be > 0"),
    (dict(epochs="three"), TypeError, "epochs must be an integer, got 'three'"),
    (dict(lambda_align=-1.0), ValueError, "lambda_align must be >= 0"),
    (dict(momentum=5.0), ValueError, "momentum must be < 1"),
    (dict(batch_size=True), TypeError, "batch_size must be an integer"),
    (dict(lr="1e-3"), TypeError, "lr must be a number.*1.0e-3"),
    (dict(backend="gpu"), ValueError, "backend must be one of"),
    (dict(data_options=[1]), TypeError, "data_options must be a mapping"),
])
def test_config_rejects_bad_values_naming_the_key(change, kind, message):
    with pytest.raises(kind, match=message):
        TrainConfig(**change)


def test_every_config_field_has_a_validation_rule():
    assert set(RULES) == {f.name for f in dataclasses.fields(TrainConfig)}


def test_yaml_list_as_config_is_refused(tmp_path):
    (tmp_path / "c.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(TypeError, match="a config must be a mapping"):
        TrainConfig.from_file(tmp_path / "c.yaml")


def test_train_help_describes_every_option_with_its_choices(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "{ce,cb-focal,ldam-drw,balanced-softmax,logit-adjust,crt,tau-norm,cmltnet}" in text
    assert "learning rate (> 0); default 0.1" in text
    assert "SGD momentum (>= 0, < 1); default 0.9" in text
    assert "--allow-config-change" in text


# ------------------------------------------------------------------------------------ the CLI

def _saved_config(tmp_path, **changes):
    path = tmp_path / "config-in.json"
    tiny_config(tmp_path, **changes).save(path)
    return str(path)


@pytest.mark.parametrize("argv, message", [
    (["train", "--lr", "nan"], "error: lr must be finite"),
    (["train", "--word-topk", "0"], "error: word_topk must hold integers >= 1"),
    (["train", "--align-temperature", "0"], "error: align_temperature must be > 0"),
    (["eval", "no/such/run"], "error: checkpoint not found"),
])
def test_cli_validation_errors_are_one_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and "Traceback" not in err and err.count("\n") == 1


def test_cli_config_file_errors(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("epochs: three\n")
    assert main(["train", "--config", str(tmp_path / "c.yaml")]) == 2
    assert capsys.readouterr().err.startswith("error: epochs must be an integer, got 'three'")


def test_words_on_a_training_checkpoint_explains_model_pt(tmp_path, capsys):
    ckpt.atomic_save({"format": ckpt.FORMAT, "epoch": 1, "model": {}}, tmp_path / "checkpoint.pt")
    assert main(["words", "--checkpoint", str(tmp_path / "checkpoint.pt"), "--test-examples", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "training checkpoint" in err and "model.pt" in err


@pytest.mark.parametrize("argv", [["words", "--checkpoint", "x", "--test-examples", "-1"],
                                  ["words", "--checkpoint", "x", "-k", "0", "a.png"]])
def test_words_rejects_negative_counts(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2 and "must be >=" in capsys.readouterr().err


def test_pycmlt_debug_shows_the_traceback(monkeypatch):
    monkeypatch.setenv("PYCMLT_DEBUG", "1")
    with pytest.raises(ValueError, match="lr must be finite"):
        main(["train", "--lr", "nan"])


# ------------------------------------------------------------------------------------ run lock

def test_second_run_into_a_locked_folder_names_the_holder(tmp_path):
    config = tiny_config(tmp_path, epochs=1)
    with RunLock(config.out_dir):
        with pytest.raises(RunLockedError, match=f"in use by another run \\(pid {os.getpid()} on "
                                                 f"{socket.gethostname()}, started 20"):
            pycmlt.train(config)
    assert not (tmp_path / "run" / "config.json").exists()
    pycmlt.train(config)  # released: the folder is free again


def test_lock_held_by_another_process_is_free_once_it_is_killed(tmp_path):
    # a holder in another process (plain flock, as RunLock takes it), killed without any clean-up
    code = ("import fcntl, json, sys; f = open(sys.argv[1], 'a+'); fcntl.flock(f, fcntl.LOCK_EX); "
            "f.write(json.dumps({'pid': 4242, 'host': 'elsewhere', 'started': 'earlier'})); f.flush(); "
            "print('locked', flush=True); sys.stdin.read()")
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "run.lock")], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError, match="pid 4242 on elsewhere, started earlier"):
            RunLock(tmp_path).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with RunLock(tmp_path):  # the holder is dead: acquiring works and records the new holder
        assert json.loads((tmp_path / "run.lock").read_text())["pid"] == os.getpid()


# ------------------------------------------------------------------------------------ divergence

def _nan_loss_at(monkeypatch, epoch: int, step: int):
    """The objective returns NaN at (epoch, step), both 0-based."""
    forward, update = CMLTNetObjective.forward, CMLTNetObjective.update
    at = {"epoch": -1, "step": 0}

    def update_and_track(self, e):
        at.update(epoch=e, step=0)
        update(self, e)

    def nan_forward(self, *args):
        loss, parts = forward(self, *args)
        if (at["epoch"], at["step"]) == (epoch, step):
            loss = loss * float("nan")
        at["step"] += 1
        return loss, parts

    monkeypatch.setattr(CMLTNetObjective, "update", update_and_track)
    monkeypatch.setattr(CMLTNetObjective, "forward", nan_forward)


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    _nan_loss_at(monkeypatch, epoch=1, step=1)
    config = tiny_config(tmp_path, epochs=3)
    with pytest.raises(TrainingDivergedError, match="diverged at epoch 2, step 2/"):
        pycmlt.train(config)
    state = ckpt.load(tmp_path / "run" / "checkpoint.pt")
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert not (tmp_path / "run" / "model.pt").exists() and not (tmp_path / "run" / "metrics.json").exists()


def test_nan_parameters_are_never_checkpointed(tmp_path, monkeypatch):
    original = epoch_loop.train_epoch

    def poisoned(run, trainer, epoch):
        log = original(run, trainer, epoch)
        if log["epoch"] == 2:
            with torch.no_grad():
                next(trainer.model.parameters()).fill_(float("inf"))
        return log

    monkeypatch.setattr(epoch_loop, "train_epoch", poisoned)
    with pytest.raises(TrainingDivergedError, match="epoch 2: parameter visual.* is NaN or infinite"):
        pycmlt.train(tiny_config(tmp_path, epochs=3))
    assert ckpt.load(tmp_path / "run" / "checkpoint.pt")["epoch"] == 1


def test_huge_learning_rate_diverges_with_a_clear_error(tmp_path):
    with pytest.raises(TrainingDivergedError, match="diverged at epoch 1, step"):
        pycmlt.train(tiny_config(tmp_path, lr=1e6))


def test_cli_exits_non_zero_on_divergence(tmp_path, capsys):
    code = main(["train", "--config", _saved_config(tmp_path), "--lr", "1e30"])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: training diverged at epoch 1, step") and "Traceback" not in err


# ------------------------------------------------------------------------------------ resume

def test_resume_refuses_a_different_config_and_keeps_config_json(tmp_path):
    pycmlt.train(tiny_config(tmp_path, epochs=1))
    stored = (tmp_path / "run" / "config.json").read_text()
    with pytest.raises(ConfigMismatchError, match="batch_size: 16 -> 8; lr: 0.05 -> 0.01.*--allow-config-change"):
        pycmlt.train(tiny_config(tmp_path, epochs=1, lr=0.01, batch_size=8), resume=True)
    with pytest.raises(ConfigMismatchError, match="different backbone, cls_loss, method .*another out_dir"):
        pycmlt.train(tiny_config(tmp_path, epochs=1, method="cmltnet", backbone="resnet32"), resume=True,
                     allow_config_change=["epochs"])
    with pytest.raises(ValueError, match="cannot change on resume"):
        pycmlt.train(tiny_config(tmp_path, epochs=1, method="cmltnet"), resume=True, allow_config_change="method")
    assert (tmp_path / "run" / "config.json").read_text() == stored
    # free keys (where and how verbosely it runs) may differ
    pycmlt.train(tiny_config(tmp_path, epochs=1, num_workers=0, progress=False, eval_every=1), resume=True)


def test_resume_with_an_allowed_change_from_the_cli(tmp_path, capsys):
    config_file = _saved_config(tmp_path, epochs=1)
    assert main(["train", "--config", config_file]) == 0
    assert main(["train", "--config", config_file, "--epochs", "2", "--resume"]) == 2
    assert "epochs: 1 -> 2" in capsys.readouterr().err
    assert main(["train", "--config", config_file, "--epochs", "2", "--resume", "--allow-config-change", "epochs"]) == 0
    assert ckpt.load(tmp_path / "run" / "checkpoint.pt")["epoch"] == 2
    assert json.loads((tmp_path / "run" / "config.json").read_text())["epochs"] == 2


def test_checkpoint_of_another_model_is_a_named_error(tmp_path):
    pycmlt.train(tiny_config(tmp_path, epochs=1))
    (tmp_path / "run" / "config.json").unlink()  # nothing to compare with: the load itself must explain
    with pytest.raises(ConfigMismatchError, match="does not fit the model of this config"):
        pycmlt.train(tiny_config(tmp_path, epochs=2, backbone="resnet32"), resume=True)


# ------------------------------------------------------------------------------------ data checks

def _manifest(tmp_path, rows):
    lines = ["image,label,words,split"]
    for i, (label, split) in enumerate(rows):
        name = f"img{i}.png"
        write_image(tmp_path / name, seed=i, size=(12, 12))
        lines.append(f"{name},{label},w{i % 3} shared,{split}")
    (tmp_path / "data.csv").write_text("\n".join(lines) + "\n")
    return str(tmp_path / "data.csv")


def _manifest_config(tmp_path, path, **changes):
    return tiny_config(tmp_path, dataset="manifest", data_root=path, data_options={}, epochs=1, **changes)


def test_empty_test_split_fails_before_training(tmp_path):
    path = _manifest(tmp_path, [("a", "train")] * 4 + [("b", "train")] * 3)
    with pytest.raises(ValueError, match="the test split of dataset 'manifest' is empty"):
        pycmlt.train(_manifest_config(tmp_path, path))
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


@pytest.mark.parametrize("method", ["ce", "balanced-softmax", "cb-focal", "ldam-drw", "cmltnet"])
def test_class_without_training_images_is_one_error_for_every_method(tmp_path, method):
    rows = [("a", "train")] * 4 + [("b", "train")] * 3 + [("a", "test"), ("b", "test"), ("c", "test")]
    path = _manifest(tmp_path, rows)
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="1 of 3 classes have no training images: 'c'"):
        pycmlt.train(_manifest_config(tmp_path, path, method=method))
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


# ------------------------------------------------------------------------------------ progress

def test_progress_off_a_terminal_is_plain_lines(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("pycmlt.training.progress.EVERY_S", 0.0)
    pycmlt.train(tiny_config(tmp_path, progress=True))
    out, err = capsys.readouterr()
    assert "\r" not in err and "\r" not in out
    assert [line.split(":")[0] for line in out.splitlines() if line.startswith("epoch ")] == ["epoch 1/2", "epoch 2/2"]
    assert err.splitlines()[0].startswith("epoch 1/2: step 1/6, loss ")


def test_epoch_line_shows_val_scores_when_selecting_on_val(tmp_path, capsys):
    pycmlt.train(tiny_config(tmp_path, progress=True, select_on="val"))
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")]
    assert len(lines) == 2 and all("val top-1 " in line and line.endswith("img/s)") for line in lines)
