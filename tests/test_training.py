"""End-to-end training on the tiny synthetic dataset: every method trains and evaluates, outputs
are written, a killed run resumes to the same result, DDP runs on two CPU processes."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import pycmlt
from pycmlt.training import TrainConfig, load_model

ROOT = Path(__file__).resolve().parents[1]
TINY_DATA = {"num_classes": 6, "n_max": 40, "imbalance_ratio": 10.0, "test_per_class": 6}


def tiny_config(tmp_path, **changes) -> TrainConfig:
    base = dict(dataset="synthetic", image_size=16, data_options=TINY_DATA, backbone="resnet20", epochs=2,
                batch_size=16, lr=0.05, warmup_epochs=0, out_dir=str(tmp_path / "run"), progress=False,
                word_dim=16, num_workers=0)
    base.update(changes)
    return TrainConfig(**base)


def read_metrics(run_dir) -> dict:
    return json.loads((Path(run_dir) / "metrics.json").read_text())


@pytest.mark.parametrize("method", ["ce", "cb-focal", "ldam-drw", "balanced-softmax", "logit-adjust", "cmltnet"])
def test_every_method_trains_and_writes_its_outputs(tmp_path, method):
    result = pycmlt.train(tiny_config(tmp_path, method=method))
    out = result.out_dir
    for name in ("config.json", "checkpoint.pt", "model.pt", "metrics.json", "metrics.md", "per_class_accuracy.png"):
        assert (out / name).exists(), name
    m = read_metrics(out)
    assert m["method"] == method and 0.0 <= m["top1"] <= 1.0
    assert set(m["group_sizes"]) == {"many", "medium", "few"}
    assert len(result.history) == 2 and all(torch.isfinite(torch.tensor(h["loss"])) for h in result.history)
    if method == "cmltnet":
        assert {"align", "infer_align", "infer_words"} <= set(result.history[0])
        assert {"recall@1", "recall@5", "map"} <= set(m["words"])


@pytest.mark.parametrize("ablation", [dict(use_align=False), dict(use_infer=False, use_fuse=False),
                                      dict(use_fuse=False), dict(semantic_head=False), dict(semantic_head=True),
                                      dict(cls_loss="balanced-softmax")])
def test_cmltnet_ablations(tmp_path, ablation):
    result = pycmlt.train(tiny_config(tmp_path, method="cmltnet", epochs=1, **ablation))
    model, _ = load_model(result.out_dir)
    assert model.config.use_align == ablation.get("use_align", True)
    assert model.config.use_infer == ablation.get("use_infer", True)
    assert model.config.semantic_head == (ablation.get("semantic_head", False) and model.config.use_infer)
    assert model.config.classifier == ("linear" if ablation.get("cls_loss") == "balanced-softmax" else "cosine")
    assert torch.isfinite(torch.tensor(result.history[0]["loss"]))


def test_second_stage_methods(tmp_path):
    stage1 = pycmlt.train(tiny_config(tmp_path, out_dir=str(tmp_path / "ce")))
    crt = pycmlt.train(tiny_config(tmp_path, method="crt", stage1=str(stage1.out_dir), crt_epochs=1,
                                   out_dir=str(tmp_path / "crt")))
    tau = pycmlt.train(tiny_config(tmp_path, method="tau-norm", stage1=str(stage1.out_dir),
                                   out_dir=str(tmp_path / "tau")))
    base, _ = load_model(stage1.out_dir)
    retrained, _ = load_model(crt.out_dir)
    normed, _ = load_model(tau.out_dir)
    # crt keeps the features and re-learns the classifier; tau-norm equalises the weight norms
    for (k, a), (_, b) in zip(base.visual.state_dict().items(), retrained.visual.state_dict().items()):
        assert torch.equal(a, b), k
    assert not torch.equal(base.classifier.weight, retrained.classifier.weight)
    torch.testing.assert_close(normed.classifier.weight.norm(dim=1), torch.ones(6))
    assert read_metrics(crt.out_dir)["method"] == "crt"


def test_refuses_to_overwrite_a_run(tmp_path):
    pycmlt.train(tiny_config(tmp_path, epochs=1))
    with pytest.raises(FileExistsError, match="--resume"):
        pycmlt.train(tiny_config(tmp_path, epochs=1))


def _cli(*args, env=None):
    return [sys.executable, "-m", "pycmlt", *args]


def _run_args(out_dir, epochs):
    return ["train", "--dataset", "synthetic", "--image-size", "16", "--data-options", json.dumps(TINY_DATA),
            "--backbone", "resnet20", "--epochs", str(epochs), "--batch-size", "8", "--lr", "0.05",
            "--warmup-epochs", "0", "--out", str(out_dir), "--no-progress", "--method", "cmltnet", "--word-dim", "16"]


def test_killed_run_resumes_to_the_same_result(tmp_path):
    epochs = 4
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    straight = tmp_path / "straight"
    subprocess.run(_cli(*_run_args(straight, epochs)), check=True, env=env, cwd=ROOT, capture_output=True)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cli(*_run_args(killed, epochs)), env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    checkpoint = killed / "checkpoint.pt"
    deadline = time.time() + 300
    while not checkpoint.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = torch.load(checkpoint, weights_only=False)["epoch"]
    assert 1 <= done < epochs, "the run must be killed part-way"
    assert not (killed / "metrics.json").exists()
    subprocess.run(_cli(*_run_args(killed, epochs), "--resume"), check=True, env=env, cwd=ROOT, capture_output=True)
    a, b = read_metrics(straight), read_metrics(killed)
    for key in ("top1", "many", "medium", "few", "per_class"):
        assert a[key] == b[key], key
    wa, wb = load_model(straight)[0].state_dict(), load_model(killed)[0].state_dict()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def test_compare_and_eval_cli(tmp_path):
    out = tmp_path / "cmp"
    args = ["compare", "--methods", "logit-adjust", "ce", "balanced-softmax", "--seeds", "0", "1", "--dataset", "synthetic",
            "--image-size", "16", "--data-options", json.dumps(TINY_DATA), "--backbone", "resnet20",
            "--epochs", "1", "--batch-size", "16", "--out", str(out), "--no-progress"]
    res = subprocess.run(_cli(*args), capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    summary = json.loads((out / "compare.json").read_text())
    assert set(summary["mean"]) == {"ce", "balanced-softmax", "logit-adjust"} and summary["seeds"] == [0, 1]
    # logit-adjust reuses the ce model of its seed (post-hoc adjustment, no second training)
    assert not (out / "logit-adjust" / "seed0" / "checkpoint.pt").exists()
    adjusted, plain = load_model(out / "logit-adjust" / "seed0")[0], load_model(out / "ce" / "seed0")[0]
    assert all(torch.equal(a, b) for a, b in zip(adjusted.state_dict().values(), plain.state_dict().values()))
    assert (out / "compare.md").read_text().count("|") > 10 and (out / "per_class_accuracy.png").exists()
    res = subprocess.run(_cli("eval", str(out / "ce" / "seed0"), "--json"), capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["top1"] == read_metrics(out / "ce" / "seed0")["top1"]


def test_words_cli_and_tensorboard_scalars(tmp_path):
    from PIL import Image

    from pycmlt.data import build_dataset

    result = pycmlt.train(tiny_config(tmp_path, method="cmltnet", semantic_head=True, tensorboard=True,
                                      eval_every=1, epochs=2))
    assert list((result.out_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert "eval" in result.history[0] and "top1" in result.history[0]["eval"]
    test_set = build_dataset("synthetic", "test", image_size=16, **TINY_DATA)
    image_path = tmp_path / "example.png"
    Image.fromarray(test_set.raw_image(0).permute(1, 2, 0).numpy()).save(image_path)
    res = subprocess.run(_cli("words", "--checkpoint", str(result.out_dir), str(image_path), "-k", "3",
                              "--test-examples", "2"), capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == str(image_path) and lines[1].startswith("  inferred: ") and lines[1].count("(") == 3
    assert sum(line.startswith("  true:") for line in lines) == 2
    model, _ = load_model(result.out_dir)
    inferred = model.infer_words(test_set[0].image[None], k=4)
    assert len(inferred[0]) == 4 and all(w in model.vocab for w, _ in inferred[0])
    assert [w for w, _ in inferred[0]][:3] == [part.split(" (")[0] for part in lines[1][12:].split(", ")]


def test_ddp_on_two_cpu_processes(tmp_path):
    out = tmp_path / "ddp"
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            "-m", "pycmlt", *_run_args(out, 1)]
    res = subprocess.run(args, capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    m = read_metrics(out)
    assert m["method"] == "cmltnet" and "words" in m
