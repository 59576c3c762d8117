"""Evaluation (docs/evaluation.md). Word inference: recall@k, precision@k and mAP of the inferred
words of each image against its held-out true words."""
from pycmlt.eval.word_metrics import (
    WordInferenceMetrics,
    word_inference_metrics,
    word_mean_average_precision,
    word_recall_at_k,
)

__all__ = ["WordInferenceMetrics", "word_inference_metrics", "word_mean_average_precision", "word_recall_at_k"]
