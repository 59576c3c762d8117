"""Evaluation of a trained model on a test split: images only (words are privileged information),
long-tail accuracy or multi-label metrics (docs/evaluation.md), and, for CMLTNet with cross-modal inference,
recall@k / mAP of the words inferred from the image against the image's held-out words."""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from pycmlt.eval.longtail import longtail_accuracy, multilabel_metrics
from pycmlt.models import CMLTNet
from pycmlt.training.progress import StepProgress


@torch.no_grad()
def predict(model: CMLTNet, dataset, *, batch_size: int, device: torch.device, collate, progress: bool = True,
            need_semantic: bool = False, num_workers: int = 0, return_indices: bool = False):
    """Logits [N, C], labels, semantic vectors s [N, e] (when asked) and the examples' words; with
    return_indices, also the dataset indices of the rows (unreadable images are skipped)."""
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate, num_workers=num_workers)
    logits, labels, semantic, words, indices = [], [], [], [], []
    for batch in StepProgress(loader, "evaluate", enabled=progress):
        if len(batch) == 0:
            continue
        images = batch.images.to(device)
        out = model(images)  # no words: inference uses the image alone
        logits.append(out.logits.float().cpu())
        labels.append(batch.labels.cpu())
        if need_semantic and out.s is not None:
            semantic.append(out.s.float().cpu())
        words.extend(batch.word_lists())
        indices.append(batch.indices.cpu())
    out = (torch.cat(logits), torch.cat(labels), torch.cat(semantic) if semantic else None, words)
    return (*out, torch.cat(indices)) if return_indices else out


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
    from pycmlt.eval.word_metrics import word_inference_metrics
    index = model.word_index(vocab)
    k = min(max(ks), len(vocab))
    _, ids = index.search(semantic, k)
    return word_inference_metrics(ids, true_words, ks=[x for x in ks if x <= k], num_words=len(vocab)).as_dict()
