"""Evaluation of a model on a split: images only (words are privileged information), logits read as
the recipe says (post-hoc logit adjustment), long-tail accuracy or multi-label metrics
(docs/evaluation.md), and, for CMLTNet with cross-modal inference, recall@k / mAP of the words
inferred from the image against the image's held-out words. Used for the test metrics of a run,
the per-epoch val scores of model selection and `pycmlt eval`."""
from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader

from pycmlt.data import collate
from pycmlt.evaluation.classification_metrics import longtail_accuracy, multilabel_metrics
from pycmlt.evaluation.predictions import save_predictions
from pycmlt.models import CMLTNet
from pycmlt.training.config import TrainConfig
from pycmlt.training.progress import StepProgress
from pycmlt.training.recipes import post_hoc_adjusted


@torch.no_grad()
def collect_outputs(model: CMLTNet, dataset, fields: tuple[str, ...], *, batch_size: int, device: torch.device,
                    progress: bool = True, num_workers: int = 0) -> dict:
    """The model's outputs `fields` (CMLTNetOutput attribute names, e.g. "logits", "features", "s") for
    every example of `dataset`, from its images alone, as float CPU tensors (None for a field the model
    does not produce), plus "labels", "words" (the examples' word ids) and "indices" (the dataset
    indices of the rows: unreadable images are skipped). A field named twice is collected once."""
    fields = tuple(dict.fromkeys(fields))
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate, num_workers=num_workers)
    parts = {name: [] for name in fields}
    labels, words, indices = [], [], []
    for batch in StepProgress(loader, "evaluate", enabled=progress):
        if len(batch) == 0:
            continue
        out = model(batch.images.to(device))  # no words: inference uses the image alone
        for name in fields:
            value = getattr(out, name)
            if value is not None:
                parts[name].append(value.float().cpu())
        labels.append(batch.labels.cpu())
        words.extend(batch.word_lists())
        indices.append(batch.indices.cpu())
    result = {name: torch.cat(chunks) if chunks else None for name, chunks in parts.items()}
    return {**result, "labels": torch.cat(labels), "words": words, "indices": torch.cat(indices)}


def predict(model: CMLTNet, dataset, *, batch_size: int, device: torch.device, progress: bool = True,
            need_semantic: bool = False, num_workers: int = 0, return_indices: bool = False):
    """Logits [N, C], labels, semantic vectors s [N, e] (when asked) and the examples' words; with
    return_indices, also the dataset indices of the rows (unreadable images are skipped)."""
    out = collect_outputs(model, dataset, ("logits", "s") if need_semantic else ("logits",), batch_size=batch_size,
                          device=device, progress=progress, num_workers=num_workers)
    result = (out["logits"], out["labels"], out.get("s"), out["words"])
    return (*result, out["indices"]) if return_indices else result


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor, train_counts: torch.Tensor,
                           multi_label: bool) -> dict:
    if multi_label:
        return {"kind": "multi-label", **multilabel_metrics(logits, labels)}
    acc = longtail_accuracy(logits.argmax(1), labels, train_counts)
    return {"kind": "single-label", **acc.to_dict()}


def word_inference_metrics(model: CMLTNet, semantic: torch.Tensor, true_words: list[list[int]], vocab: list[str],
                           ks=(1, 5, 10)) -> dict:
    """Recall@k, precision@k and mAP of the nearest words of s in the learned word space (FAISS
    index, cosine) against each test image's own words; images without words are excluded."""
    from pycmlt.evaluation.word_metrics import word_inference_metrics
    index = model.word_index(vocab)
    k = min(max(ks), len(vocab))
    _, ids = index.search(semantic, k)
    return word_inference_metrics(ids, true_words, ks=[x for x in ks if x <= k], num_words=len(vocab)).as_dict()


def evaluation_logits(config: TrainConfig, logits: torch.Tensor, class_counts: torch.Tensor) -> torch.Tensor:
    """Logits as read at test time: post-hoc adjusted (logits - tau log prior) when the recipe says so."""
    if post_hoc_adjusted(config):
        prior = class_counts.clamp_min(1).float() / class_counts.clamp_min(1).sum()
        return logits - config.logit_adjust_tau * torch.log(prior).to(logits.device)
    return logits


def split_scores(model, config: TrainConfig, dataset, class_counts, multi_label: bool, device) -> dict:
    """Accuracy of `model` on one split as read at test time: top1, many, medium, few (mAP when
    multi-label). The global RNG is left untouched, so scoring does not change the training draws."""
    with torch.random.fork_rng(devices=[]):
        logits, labels, _, _ = predict(model, dataset, batch_size=256, device=device, progress=False,
                                       num_workers=config.num_workers)
    m = classification_metrics(evaluation_logits(config, logits, class_counts), labels, class_counts, multi_label)
    return {k: m[k] for k in ("top1", "many", "medium", "few", "mAP") if k in m}


def evaluate_model(model: CMLTNet, config: TrainConfig, test_set, class_counts, vocab, multi_label, device,
                   predictions_path: Path | None = None) -> dict:
    """Test metrics; with predictions_path, also the per-sample predictions (single-label data)."""
    need_s = model.config.use_infer
    logits, labels, semantic, words, indices = predict(
        model, test_set, batch_size=max(256, config.batch_size), device=device, progress=config.progress,
        need_semantic=need_s, num_workers=config.num_workers, return_indices=True)
    logits = evaluation_logits(config, logits, class_counts)
    metrics = classification_metrics(logits, labels, class_counts, multi_label)
    if predictions_path is not None and not multi_label:
        save_predictions(predictions_path, [test_set.item_key(i) for i in indices.tolist()], labels,
                         logits.argmax(1), dataset=config.dataset, data_seed=config.data_seed)
    if need_s and semantic is not None:
        metrics["words"] = word_inference_metrics(model, semantic, words, vocab, ks=config.word_topk)
    metrics["method"] = config.method
    metrics["seed"] = config.seed
    return metrics


def data_report(dataset) -> dict:
    """Size and unreadable images of a split, for metrics.json."""
    return {"size": len(dataset), "bad_images": dataset.bad_images.to_dict()}
