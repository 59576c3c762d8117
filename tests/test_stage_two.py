"""The second stage (pycmlt.training.stage_two): cRT checkpoints every epoch and a killed cRT run
resumes to the same classifier as an uninterrupted one; under torchrun every rank trains cRT in step
and rank 0 writes the outputs."""
import json
import os
import subprocess
import sys

import pytest
import torch
from run_helpers import kill_in_epoch
from test_training import ROOT, _run_args, read_metrics, tiny_config

import pycmlt
from pycmlt.training import checkpoint as ckpt
from pycmlt.training import epoch_loop, load_model


@pytest.fixture(scope="module")
def stage_one(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stage1")
    return pycmlt.train(tiny_config(tmp, out_dir=str(tmp / "ce"), epochs=1)).out_dir


def crt_config(tmp_path, stage_one, name):
    return tiny_config(tmp_path, method="crt", stage1=str(stage_one), crt_epochs=3, out_dir=str(tmp_path / name))


def test_a_killed_crt_run_resumes_to_the_same_classifier(tmp_path, monkeypatch, stage_one):
    straight = pycmlt.train(crt_config(tmp_path, stage_one, "straight"))
    real, trained = kill_in_epoch(monkeypatch, 2), []
    with pytest.raises(KeyboardInterrupt):
        pycmlt.train(crt_config(tmp_path, stage_one, "killed"))
    assert ckpt.load(tmp_path / "killed" / "checkpoint.pt")["epoch"] == 1

    def recording(run, trainer, epoch):
        trained.append(epoch)
        return real(run, trainer, epoch)

    monkeypatch.setattr(epoch_loop, "train_epoch", recording)
    resumed = pycmlt.train(crt_config(tmp_path, stage_one, "killed"), resume=True)
    assert trained == [1, 2]  # only the epochs after the checkpoint
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in straight.history]
    a, b = load_model(straight.out_dir)[0].state_dict(), load_model(resumed.out_dir)[0].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert read_metrics(straight.out_dir)["top1"] == read_metrics(resumed.out_dir)["top1"]


def test_crt_under_torchrun_trains_on_every_rank(tmp_path, stage_one):
    out = tmp_path / "crt-ddp"
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "pycmlt",
            *_run_args(out, 1), "--method", "crt", "--stage1", str(stage_one), "--crt-epochs", "2"]
    res = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
                         timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert read_metrics(out)["method"] == "crt" and ckpt.load(out / "checkpoint.pt")["epoch"] == 2
    assert json.loads((out / "config.json").read_text())["method"] == "crt"
    base, retrained = load_model(stage_one)[0], load_model(out)[0]
    assert all(torch.equal(a, b) for a, b in zip(base.visual.state_dict().values(),
                                                 retrained.visual.state_dict().values()))
    assert not torch.equal(base.classifier.weight, retrained.classifier.weight)
