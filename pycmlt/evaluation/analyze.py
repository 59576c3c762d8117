"""analyze_runs (`pycmlt analyze`): the CMLTNet paper's two case studies for trained run folders that
share a dataset, side by side: the distribution of the test features per shot group
(feature_distribution.png + the numbers in analysis.json, see pycmlt.evaluation.feature_stats) and Grad-CAM
attention on few-shot test images (attention.png), with the words each CMLTNet infers for them. For a
CMLTNet with more than one head, analysis.json also scores each head alone and the sum without each
(pycmlt.evaluation.head_contributions): whether the words' heads recognise any class, and which."""
from __future__ import annotations

import importlib.util
from functools import partial
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from pycmlt.data.cache import write_json_atomic
from pycmlt.evaluation.analysis_plots import plot_attention_grid, plot_feature_distribution
from pycmlt.evaluation.attention import grad_cam
from pycmlt.evaluation.feature_stats import shot_group_feature_stats, subsample, tsne_2d
from pycmlt.evaluation.head_contributions import head_contributions
from pycmlt.evaluation.classification_metrics import shot_groups
from pycmlt.training.checkpoint import load_run
from pycmlt.training.model_evaluation import collect_outputs
from pycmlt.training.loop import load_datasets, resolve_device
from pycmlt.training.metrics_report import percent
from pycmlt.training.model_evaluation import evaluation_logits

ANALYSIS = "analysis.json"
FEATURE_FIGURE = "feature_distribution.png"
ATTENTION_FIGURE = "attention.png"
FEATURES = {"classifier": "features", "visual": "h_v"}  # --features -> CMLTNetOutput field
DATASET_FIELDS = ("dataset", "data_root", "data_seed", "image_size", "data_options")


def _check_count(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return int(value)


def run_names(run_dirs: Sequence[str | Path]) -> list[str]:
    """Short distinct names of run folders: their last path component, or as many trailing components
    as it takes to tell them apart (runs/ce/seed0, runs/cmlt/seed0 -> ce/seed0, cmlt/seed0)."""
    parts = [Path(d).resolve().parts for d in run_dirs]
    if len(set(parts)) != len(parts):
        twice = next(str(d) for d, p in zip(run_dirs, parts) if parts.count(p) > 1)
        raise ValueError(f"run_dirs names the run {twice} twice")
    for depth in range(1, max(len(p) for p in parts) + 1):
        names = ["/".join(p[-depth:]) for p in parts]
        if len(set(names)) == len(names):
            return names
    raise AssertionError("distinct paths always have distinct suffixes")


def _check_shared_dataset(names: list[str], configs: list, metas: list[dict]) -> None:
    first = configs[0]
    for name, config, meta in zip(names[1:], configs[1:], metas[1:]):
        for field in DATASET_FIELDS:
            a, b = getattr(first, field), getattr(config, field)
            if a != b:
                raise ValueError(f"the runs must share a dataset: {names[0]} has {field}={a!r} but {name} has "
                                 f"{field}={b!r}")
        if meta["classes"] != metas[0]["classes"]:
            raise ValueError(f"the runs must share a dataset: {names[0]} and {name} were trained on different classes")
    if metas[0]["multi_label"]:
        raise ValueError(f"{first.dataset} is multi-label: the analysis needs one class per image")


def tail_examples(labels: torch.Tensor, train_counts: torch.Tensor, num_images: int, seed: int) -> list[int]:
    """Indices of up to `num_images` test images of few-shot classes (of the classes with the fewest
    training images when no few-shot class has a test image): one image of each class in turn, classes
    from the rarest up, a seeded random order within each class."""
    counts = torch.as_tensor(train_counts)
    present = torch.bincount(labels, minlength=counts.numel()) > 0
    pool = torch.as_tensor(shot_groups(counts)["few"]) & present
    if not pool.any():
        pool = present
    classes = sorted(torch.nonzero(pool).flatten().tolist(), key=lambda c: (float(counts[c]), c))
    rng = np.random.default_rng(seed)
    queues = [list(rng.permutation(torch.nonzero(labels == c).flatten().numpy())) for c in classes]
    chosen: list[int] = []
    while len(chosen) < num_images and any(queues):
        for queue in queues:
            if queue and len(chosen) < num_images:
                chosen.append(int(queue.pop(0)))
    return chosen


def _log(progress: bool, message: str) -> None:
    if progress:
        print(message, flush=True)


@torch.no_grad()
def _heads(model, out: dict, device) -> dict[str, torch.Tensor]:
    """The run's per-head test logits (CMLTNet.head_logits) from its collected h_v and s, on the CPU."""
    s = out["s"].to(device) if out["s"] is not None else None
    heads, _ = model.head_logits(out["h_v"].to(device), s)
    return {name: logits.float().cpu() for name, logits in heads.items()}


def analyze_runs(run_dirs: Sequence[str | Path], out_dir: str | Path, *, num_images: int = 8,
                 max_points: int = 1000, num_words: int = 3, features: str = "classifier",
                 device: str | torch.device = "auto", seed: int = 0, data_root: str | None = None,
                 progress: bool = True) -> dict:
    """Analyses the trained run folders `run_dirs` (`pycmlt train --out-dir`) on their shared test split
    and writes analysis.json, feature_distribution.png and attention.png into out_dir; returns the
    analysis.json content.

    features: "classifier" (the classifier's input: h_v, or [h_v, psi(s)] for a fusing CMLTNet) or
    "visual" (the backbone's h_v). max_points: test images in each t-SNE (a seeded subset, the same for
    every run); the statistics use every test image. num_images: few-shot test images in the Grad-CAM
    grid (of the true class's logit); num_words: words shown per image for CMLTNet runs."""
    for module in ("captum", "sklearn"):
        if importlib.util.find_spec(module) is None:
            raise ImportError(f"the analysis needs {module}: pip install 'pycmlt[analysis]'")
    if isinstance(run_dirs, (str, Path)) or not len(run_dirs):
        raise ValueError("run_dirs must be a non-empty list of run folders")
    num_images = _check_count("num_images", num_images, 1)
    max_points = _check_count("max_points", max_points, 4)
    num_words = _check_count("num_words", num_words, 1)
    seed = _check_count("seed", seed, 0)
    if features not in FEATURES:
        raise ValueError(f"features must be one of {tuple(FEATURES)}, got {features!r}")
    for d in run_dirs:
        if not (Path(d) / "model.pt").is_file():
            raise FileNotFoundError(f"{d} is not a finished run folder (no model.pt): give folders written by "
                                    "`pycmlt train --out-dir`")
    names = run_names(run_dirs)
    device = resolve_device(str(device))
    runs = [load_run(d, device, data_root=data_root) for d in run_dirs]
    models, metas, configs = (list(x) for x in zip(*runs))
    _check_shared_dataset(names, configs, metas)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    _log(progress, f"analyze: loading the {configs[0].dataset} test split")
    _, test_set = load_datasets(configs[0])
    counts = torch.as_tensor(metas[0]["class_counts"], dtype=torch.float32)
    labels = test_set.targets.long()
    classes = list(test_set.classes)
    group_masks = {g: torch.as_tensor(m) for g, m in shot_groups(counts).items()}
    present = torch.bincount(labels, minlength=len(classes)) > 0
    group_of_class = np.empty(len(classes), dtype=object)
    for g, m in group_masks.items():
        group_of_class[m.numpy()] = g
    points = subsample(len(test_set), max_points, seed)
    shown = tail_examples(labels, counts, num_images, seed)
    images = torch.stack([test_set[i].image for i in shown])
    raw = torch.stack([test_set.raw_image(i) for i in shown]).permute(0, 2, 3, 1).numpy()

    analysis = {"dataset": configs[0].dataset, "test_images": len(test_set), "features": features,
                "tsne_points": len(points), "seed": seed,
                "test_groups": {g: {"classes": int((m & present).sum()), "images": int(m[labels].sum())}
                                for g, m in group_masks.items()},
                "attention_images": [{"index": i, "class": classes[int(labels[i])],
                                      "group": str(group_of_class[int(labels[i])]),
                                      "train_count": int(counts[labels[i]])} for i in shown],
                "runs": {}}
    tsne_panels, attention_columns = {}, {}
    for name, run_dir, model, config in zip(names, run_dirs, models, configs):
        _log(progress, f"analyze {name}: test features")
        out = collect_outputs(model, test_set, ("logits", FEATURES[features], "h_v", "s"),
                              batch_size=max(256, config.batch_size), device=device, progress=progress)
        if len(out["labels"]) != len(test_set):
            raise ValueError(f"{len(test_set) - len(out['labels'])} test images could not be read: the analysis "
                             "needs every test image")
        feats = out[FEATURES[features]]
        stats = shot_group_feature_stats(feats, out["labels"], counts)
        test_pred = evaluation_logits(config, out["logits"], counts).argmax(1)
        heads = _heads(model, out, device)
        _log(progress, f"analyze {name}: t-SNE of {len(points)} points")
        coords = tsne_2d(feats[points], seed)
        tsne_panels[name] = {"coords": coords, "groups": group_of_class[out["labels"][points].numpy()],
                             "stats": stats}
        _log(progress, f"analyze {name}: Grad-CAM on {len(shown)} few-shot images")
        maps = grad_cam(model, images.to(device), labels[shown].to(device))
        predicted = test_pred[shown].tolist()
        words = None
        if model.config.use_infer:
            words = [[w for w, _ in row] for row in model.infer_words(images.to(device), num_words)]
        correct = [p == int(labels[i]) for p, i in zip(predicted, shown)]
        attention_columns[name] = {"maps": maps.numpy(), "correct": correct, "words": words,
                                   "titles": [f"pred: {classes[p]}" for p in predicted]}
        analysis["runs"][name] = {
            "run_dir": str(run_dir), "method": config.method,
            "groups": stats,
            "test_top1": float((test_pred == out["labels"]).double().mean()),
            **({"heads": head_contributions(heads, out["labels"], counts,
                                            partial(evaluation_logits, config, class_counts=counts))}
               if len(heads) > 1 else {}),
            "attention": [{"index": i, "predicted": classes[p], "correct": ok,
                           **({"words": w} if words is not None else {})}
                          for i, p, ok, w in zip(shown, predicted, correct, words or [None] * len(shown))]}
        for combo, acc in analysis["runs"][name].get("heads", {}).items():
            _log(progress, f"analyze {name}: {combo}: top-1 {percent(acc['top1'])} %, few {percent(acc['few'])} %")

    n_points = f"{len(points)} of {len(test_set)}" if len(points) < len(test_set) else f"all {len(test_set)}"
    plot_feature_distribution(tsne_panels, out_dir / FEATURE_FIGURE,
                              f"{configs[0].dataset} test features ({features}): t-SNE of {n_points} images by "
                              "shot group (top); per-group intra-class cosine and nearest-class margin (bottom)")
    row_titles = [f"{a['class']}\n({a['group']}, {a['train_count']} train)" for a in analysis["attention_images"]]
    plot_attention_grid(raw, row_titles, attention_columns, out_dir / ATTENTION_FIGURE,
                        f"Grad-CAM of the true class's logit on {configs[0].dataset} few-shot test images "
                        "(no overlay: no location supports the true class; title: the run's prediction, green right, "
                        "red wrong)")
    analysis["figures"] = {"feature_distribution": FEATURE_FIGURE, "attention": ATTENTION_FIGURE}
    write_json_atomic(out_dir / ANALYSIS, analysis)
    _log(progress, f"analyze: wrote {out_dir / ANALYSIS}, {out_dir / FEATURE_FIGURE} and {out_dir / ATTENTION_FIGURE}")
    return analysis

