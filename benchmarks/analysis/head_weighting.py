"""Would a different weight on a CMLTNet's word head help? A post-hoc check on finished runs.

A CMLTNet with a text-anchor (or semantic) head predicts from the sum of its heads
(`CMLTNet.head_logits`), weighted 1:1 with the scale training learned. This script rescores each run
with `classifier + w * head` for a grid of weights w, picks w on the run's **validation** split (best
few-shot accuracy, then top-1), and reports test accuracy at w = 1 (the model as trained) and at the
chosen w. Test is only read to report the choice val made, never to make it.

    python -m benchmarks.analysis.head_weighting runs/long/emoji-lt-20/cmltnet-anchor-contrast/data*-seed* \
        --head text_anchors --out benchmarks/results/emoji-lt/long-20/head-weighting

writes head-weighting.json (per run: val and test top-1 / few at every w, the chosen w) and
head-weighting.md (means over the runs)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from pycmlt.atomic_write import atomic_write_json, atomic_write_text
from pycmlt.evaluation.classification_metrics import longtail_accuracy
from pycmlt.training.checkpoint import load_run
from pycmlt.training.loop import load_datasets
from pycmlt.training.model_evaluation import collect_outputs, evaluation_logits

WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 1000.0)  # 0: classifier alone; 1000: the head alone
METRICS = ("top1", "few")


@torch.no_grad()
def split_heads(model, dataset) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Each head's logits on every image of `dataset` (images only, as at test time) and the labels."""
    out = collect_outputs(model, dataset, ("h_v", "s"), batch_size=512, device=torch.device("cpu"), progress=False)
    if out["h_v"] is None or len(out["labels"]) != len(dataset):
        raise ValueError("every image of the split must be readable")
    heads, _ = model.head_logits(out["h_v"], out["s"])
    return heads, out["labels"].long()


def weight_curve(heads: dict[str, torch.Tensor], labels: torch.Tensor, counts: torch.Tensor, head: str,
                 config) -> dict:
    """{w: {top1, few}} for the logits classifier + w * head, read as the run reads its logits at test
    time (evaluation_logits: the post-hoc adjustment of a logit-adjust run)."""
    curve = {}
    for w in WEIGHTS:
        logits = evaluation_logits(config, heads["classifier"] + w * heads[head], counts)
        acc = longtail_accuracy(logits.argmax(1), labels, counts).to_dict()
        curve[w] = {k: float(acc[k]) for k in METRICS}
    return curve


def score_run(run_dir: str, head: str) -> dict:
    """The run's val and test curves and the weight val chooses."""
    model, meta, config = load_run(run_dir, "cpu")
    has_head = model.config.semantic_head if head == "semantic" else model.anchor_head is not None
    if not has_head:
        raise ValueError(f"{run_dir}: the model has no {head!r} head")
    _, val_set, test_set = load_datasets(config, ("train", "val", "test"))
    counts = torch.as_tensor(meta["class_counts"], dtype=torch.float32)
    curves = {}
    for name, dataset in (("val", val_set), ("test", test_set)):
        heads, labels = split_heads(model, dataset)
        curves[name] = weight_curve(heads, labels, counts, head, config)
    chosen = max(WEIGHTS, key=lambda w: (round(curves["val"][w]["few"], 9), curves["val"][w]["top1"]))
    return {"chosen_weight": chosen, **{s: {str(w): v for w, v in c.items()} for s, c in curves.items()}}


def markdown(runs: dict, head: str, command: str) -> str:
    """Means over the runs: val and test at every w, then test at w = 1 and at val's choice."""
    def mean(split, w, k):
        return 100 * sum(r[split][str(w)][k] for r in runs.values()) / len(runs)
    lines = [f"# classifier + w * {head}: mean over {len(runs)} runs (values in %)", "",
             "| w | val top-1 | val few | test top-1 | test few |", "|---:|---:|---:|---:|---:|"]
    lines += [f"| {w:g} | {mean('val', w, 'top1'):.1f} | {mean('val', w, 'few'):.1f} | {mean('test', w, 'top1'):.1f} "
              f"| {mean('test', w, 'few'):.1f} |" for w in WEIGHTS]
    chosen = [r["chosen_weight"] for r in runs.values()]
    at = {k: 100 * sum(r["test"][str(r["chosen_weight"])][k] for r in runs.values()) / len(runs) for k in METRICS}
    lines += ["", f"w chosen on val per run: {', '.join(f'{w:g}' for w in chosen)}; test at the chosen w: "
              f"top-1 {at['top1']:.1f}, few {at['few']:.1f} (at w = 1: top-1 {mean('test', 1.0, 'top1'):.1f}, "
              f"few {mean('test', 1.0, 'few'):.1f}).", "", f"Command: `{command}`", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="finished CMLTNet run folders trained with --select-on val")
    parser.add_argument("--head", default="text_anchors", choices=("text_anchors", "semantic"))
    parser.add_argument("--out", required=True, help="folder for head-weighting.{json,md}")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # many small matmuls; one thread is as fast here and leaves a core free
    runs = {}
    for run in args.runs:
        runs[run] = score_run(run, args.head)
        print(f"{run}: w chosen on val {runs[run]['chosen_weight']:g}", flush=True)
    command = "python -m benchmarks.analysis.head_weighting " + " ".join(sys.argv[1:] if argv is None else argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "head-weighting.json", {"head": args.head, "weights": list(WEIGHTS), "command": command,
                                                   "runs": runs})
    table = markdown(runs, args.head, command)
    atomic_write_text(out / "head-weighting.md", table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
