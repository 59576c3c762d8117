"""`pycmlt analyze`: the feature statistics against hand-computed cases, Grad-CAM on a model whose
answer is known, the choice of tail images, and the command on two tiny trained runs (ce, cmltnet)."""
import json
import math
from types import SimpleNamespace

import pytest
import torch
from PIL import Image
from torch import nn

import pycmlt
from pycmlt.cli import main
from pycmlt.evaluation.analyze import run_names, tail_examples
from pycmlt.evaluation.attention import grad_cam, last_feature_map_layer
from pycmlt.evaluation.feature_stats import shot_group_feature_stats, subsample, tsne_2d
from pycmlt.models.resnet_cifar import CifarResNet
from pycmlt.training import TrainConfig
from pycmlt.training import checkpoint as ckpt

TINY_DATA = {"num_classes": 6, "n_max": 40, "imbalance_ratio": 10.0, "test_per_class": 6}
KEYS = {"intra_class_similarity", "nearest_class_margin"}


# ----------------------------------------------------------------------------- feature statistics

def test_feature_stats_hand_computed_case():
    # class 0 (200 training images: many): unit vectors (1, 0) and (0, 1), scaled (cosine ignores length);
    # class 1 (5: few): (-1, 0) twice; class 2 (50: medium) has no test image.
    features = torch.tensor([[3.0, 0.0], [0.0, 0.5], [-1.0, 0.0], [-2.0, 0.0]])
    labels = torch.tensor([0, 0, 1, 1])
    stats = shot_group_feature_stats(features, labels, [200, 5, 50])
    assert set(stats) == {"many", "medium", "few"} and all(set(v) == KEYS for v in stats.values())
    # class 0: cos((1,0),(0,1)) = 0; its centroid points along (1,1)/sqrt2; class 1's along (-1,0).
    assert stats["many"]["intra_class_similarity"] == pytest.approx(0.0, abs=1e-12)
    assert stats["few"]["intra_class_similarity"] == pytest.approx(1.0)
    # margins: (1,0): 1/sqrt2 - (-1); (0,1): 1/sqrt2 - 0; each (-1,0): 1 - (-1/sqrt2)
    r = 1 / math.sqrt(2)
    assert stats["many"]["nearest_class_margin"] == pytest.approx(((r + 1) + r) / 2)
    assert stats["few"]["nearest_class_margin"] == pytest.approx(1 + r)
    assert stats["medium"] == {"intra_class_similarity": None, "nearest_class_margin": None}


def test_well_separated_clusters_are_tight_with_a_positive_margin():
    gen = torch.Generator().manual_seed(0)
    centres = torch.eye(8)[:3] * 10
    labels = torch.arange(3).repeat_interleave(20)
    features = centres[labels] + 0.1 * torch.randn(60, 8, generator=gen)
    stats = shot_group_feature_stats(features, labels, [500, 60, 3])
    for group in ("many", "medium", "few"):
        assert stats[group]["intra_class_similarity"] > 0.99
        assert stats[group]["nearest_class_margin"] > 0.95  # own centroid ~1, the others ~0
    mixed = shot_group_feature_stats(features, labels[torch.randperm(60, generator=gen)], [500, 60, 3])
    assert all(mixed[g]["nearest_class_margin"] < 0.3 for g in mixed)


def test_feature_stats_need_two_samples_of_a_class_and_two_classes():
    features = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    stats = shot_group_feature_stats(features, torch.tensor([0, 1, 1]), [3, 4])  # class 0: one test image
    assert stats["few"]["intra_class_similarity"] == pytest.approx(math.cos(math.pi / 4))  # class 1 only
    one_class = shot_group_feature_stats(features, torch.tensor([1, 1, 1]), [3, 4])
    assert one_class["few"]["nearest_class_margin"] is None  # no other class to be near


@pytest.mark.parametrize("features, labels, match", [
    (torch.tensor([[1.0, float("nan")]]), torch.tensor([0]), "NaN"),
    (torch.ones(3, 2), torch.tensor([0, 1]), "labels must be"),
    (torch.ones(2, 2), torch.tensor([0, 5]), r"labels must be in \[0, 2\)"),
    (torch.ones(2), torch.tensor([0, 1]), "features must be"),
])
def test_feature_stats_reject_bad_input(features, labels, match):
    with pytest.raises(ValueError, match=match):
        shot_group_feature_stats(features, labels, [10, 10])


def test_subsample_and_tsne():
    idx = subsample(100, 10, seed=3)
    assert len(idx) == 10 and len(set(idx.tolist())) == 10 and list(idx) == sorted(idx)
    assert (idx == subsample(100, 10, seed=3)).all() and len(subsample(5, 10, seed=0)) == 5
    coords = tsne_2d(torch.randn(12, 4, generator=torch.Generator().manual_seed(0)), seed=0)
    assert coords.shape == (12, 2)
    with pytest.raises(ValueError, match="at least 4"):
        tsne_2d(torch.ones(3, 2))


# ----------------------------------------------------------------------------- attention and images

class _LeftOrRight(nn.Module):
    """logits = (+m, -m), m the mean of a ReLU'd 1x1 convolution summing the channels."""

    def __init__(self):
        super().__init__()
        self.visual = nn.Sequential(nn.Conv2d(3, 1, 1, bias=False), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                    nn.Flatten())
        nn.init.ones_(self.visual[0].weight)

    def forward(self, x):
        m = self.visual(x)
        return SimpleNamespace(logits=torch.cat([m, -m], dim=1))


def test_grad_cam_marks_where_the_class_evidence_is():
    model = _LeftOrRight()
    image = torch.zeros(1, 3, 8, 8)
    image[..., :4] = 1.0  # evidence for class 0 on the left half only
    assert last_feature_map_layer(model.visual, 8) is model.visual[1]
    heat = grad_cam(model, image.repeat(2, 1, 1, 1), torch.tensor([0, 1]))
    assert heat.shape == (2, 8, 8) and heat.min() >= 0 and heat.max() <= 1
    assert heat[0, :, :3].min() > 0.9 and heat[0, :, 5:].max() < 0.1
    assert torch.equal(heat[1], torch.zeros(8, 8))  # nothing supports class 1: all zeros, not NaN
    with pytest.raises(ValueError, match="one class per image"):
        grad_cam(model, image, torch.tensor([0, 1]))


def test_last_feature_map_of_the_cifar_resnet_is_its_last_stage():
    net = CifarResNet(20)
    assert last_feature_map_layer(net, 16) is net.layers


def test_tail_examples_take_the_rarest_few_shot_classes_in_turn():
    counts = torch.tensor([200, 50, 3, 10])
    labels = torch.arange(4).repeat_interleave(3)
    chosen = tail_examples(labels, counts, 5, seed=0)
    assert [int(labels[i]) for i in chosen] == [2, 3, 2, 3, 2] and len(set(chosen)) == 5
    assert chosen == tail_examples(labels, counts, 5, seed=0)
    assert len(tail_examples(labels, counts, 50, seed=0)) == 6  # every few-shot test image, no more
    no_few = tail_examples(labels[:6], counts[:2], 2, seed=0)  # no few-shot class: the rarest classes
    assert [int(labels[i]) for i in no_few] == [1, 0]


def test_run_names_are_short_and_distinct():
    assert run_names(["runs/ce", "other/cmlt"]) == ["ce", "cmlt"]
    assert run_names(["runs/ce/seed0", "runs/cmlt/seed0"]) == ["ce/seed0", "cmlt/seed0"]
    with pytest.raises(ValueError, match="twice"):
        run_names(["runs/ce", "runs/../runs/ce"])


# ----------------------------------------------------------------------------- the command

@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("analyze_runs")
    base = dict(dataset="synthetic", image_size=16, data_options=TINY_DATA, backbone="resnet20", epochs=1,
                batch_size=16, lr=0.05, warmup_epochs=0, progress=False, word_dim=16, num_workers=0)
    pycmlt.train(TrainConfig(method="ce", out_dir=str(root / "ce"), **base))
    # the semantic head (off by default) on, so that the model has two heads to score apart
    pycmlt.train(TrainConfig(method="cmltnet", semantic_head=True, out_dir=str(root / "cmltnet"), **base))
    return root / "ce", root / "cmltnet"


@pytest.fixture(scope="module")
def analyzed(two_runs, tmp_path_factory):
    """`pycmlt analyze` of the two runs: (out_dir, analysis.json)."""
    out = tmp_path_factory.mktemp("analysis")
    code = main(["analyze", *map(str, two_runs), "--out-dir", str(out), "--num-images", "3", "--max-points", "20",
                 "--num-words", "2", "--device", "cpu", "--no-progress"])
    assert code == 0
    return out, json.loads((out / "analysis.json").read_text())


def test_analyze_cli_writes_the_json_and_the_figures(two_runs, analyzed):
    out, analysis = analyzed
    assert set(analysis["runs"]) == {"ce", "cmltnet"}
    for name, run in analysis["runs"].items():
        assert set(run["groups"]) == {"many", "medium", "few"}
        for group in run["groups"].values():
            assert set(group) == KEYS
        # TINY_DATA has no many-shot class; its medium and few classes have 6 test images each
        assert run["groups"]["many"] == {"intra_class_similarity": None, "nearest_class_margin": None}
        for g in ("medium", "few"):
            assert -1 <= run["groups"][g]["intra_class_similarity"] <= 1
            assert -2 <= run["groups"][g]["nearest_class_margin"] <= 2
        metrics = json.loads((two_runs[0].parent / name / "metrics.json").read_text())
        assert run["test_top1"] == pytest.approx(metrics["top1"])
        assert len(run["attention"]) == 3
    shown = analysis["attention_images"]
    assert len(shown) == 3 and all(a["group"] == "few" for a in shown)
    assert all(len(a["words"]) == 2 for a in analysis["runs"]["cmltnet"]["attention"])
    assert all("words" not in a for a in analysis["runs"]["ce"]["attention"])
    assert analysis["tsne_points"] == 20
    for figure in ("feature_distribution.png", "attention.png"):
        with Image.open(out / figure) as im:
            assert im.width > 400 and im.height > 400


def test_analyze_scores_each_head_of_a_cmltnet(two_runs, analyzed):
    from pycmlt.training.checkpoint import load_run
    from pycmlt.training.loop import load_datasets
    from pycmlt.training.model_evaluation import collect_outputs

    runs = analyzed[1]["runs"]
    assert "heads" not in runs["ce"]  # one head: nothing to decompose
    heads = runs["cmltnet"]["heads"]
    assert set(heads) == {"all", "classifier only", "semantic only"}
    assert heads["all"]["top1"] == pytest.approx(runs["cmltnet"]["test_top1"])
    model, meta, config = load_run(two_runs[1])
    _, test_set = load_datasets(config)
    out = collect_outputs(model, test_set, ("s",), batch_size=64, device=torch.device("cpu"), progress=False)
    with torch.no_grad():
        prototypes = torch.nn.functional.normalize(model.class_prototypes(), dim=1)
        semantic_pred = (torch.nn.functional.normalize(out["s"], dim=1) @ prototypes.t()).argmax(1)
    assert heads["semantic only"]["top1"] == pytest.approx(float((semantic_pred == out["labels"]).double().mean()))


@pytest.mark.parametrize("run", ["ce", "cmltnet"])
def test_analyze_statistics_are_those_of_the_run_features(two_runs, analyzed, run):
    from pycmlt.training.checkpoint import load_run
    from pycmlt.training.loop import load_datasets
    from pycmlt.training.model_evaluation import collect_outputs

    model, meta, config = load_run(two_runs[0].parent / run)
    _, test_set = load_datasets(config)
    out = collect_outputs(model, test_set, ("features",), batch_size=64, device=torch.device("cpu"),
                          progress=False)
    expected = shot_group_feature_stats(out["features"], out["labels"], meta["class_counts"])
    got = analyzed[1]["runs"][run]["groups"]
    for g in ("medium", "few"):
        for key in KEYS:
            assert got[g][key] == pytest.approx(expected[g][key], rel=1e-6)


def test_analyze_runs_api_and_progress(two_runs, tmp_path, capsys):
    analysis = pycmlt.evaluation.analyze_runs([two_runs[0]], tmp_path, num_images=1, max_points=8,
                                              features="visual", device="cpu")
    assert analysis["features"] == "visual" and list(analysis["runs"]) == ["ce"]
    assert json.loads((tmp_path / "analysis.json").read_text()) == analysis
    assert "analyze ce: Grad-CAM on 1 few-shot images" in capsys.readouterr().out


def test_analyze_refuses_runs_of_different_datasets(two_runs, tmp_path, capsys):
    other = tmp_path / "other"
    state = ckpt.load(two_runs[0] / "model.pt")
    state["train_config"]["data_seed"] = 1
    ckpt.atomic_save(state, other / "model.pt")
    code = main(["analyze", str(two_runs[1]), str(other), "--out-dir", str(tmp_path / "out"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: the runs must share a dataset") and "data_seed" in err
    assert not (tmp_path / "out").exists()  # refused before any work


@pytest.mark.parametrize("args, match", [
    (["--num-images", "0"], "num_images must be >= 1"),
    (["--max-points", "2"], "max_points must be >= 4"),
])
def test_analyze_cli_rejects_bad_options(two_runs, tmp_path, capsys, args, match):
    code = main(["analyze", str(two_runs[0]), "--out-dir", str(tmp_path / "out"), *args])
    assert code == 2 and match in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_analyze_cli_rejects_a_folder_without_a_model(tmp_path, capsys):
    code = main(["analyze", str(tmp_path), "--out-dir", str(tmp_path / "out")])
    assert code == 2 and "no model.pt" in capsys.readouterr().err
