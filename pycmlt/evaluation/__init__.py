"""Evaluation (docs/evaluation.md). Word inference: recall@k, precision@k and mAP of the inferred
words of each image against its held-out true words. `analyze_runs` (the feature-distribution and
attention case studies of trained runs) is imported on first use: it needs the training stack."""
from pycmlt.evaluation.word_metrics import (
    WordInferenceMetrics,
    word_inference_metrics,
    word_mean_average_precision,
    word_recall_at_k,
)

__all__ = ["analyze_runs", "WordInferenceMetrics", "word_inference_metrics", "word_mean_average_precision",
           "word_recall_at_k"]


def __getattr__(name):
    if name == "analyze_runs":
        from pycmlt.evaluation.analyze import analyze_runs

        return analyze_runs
    raise AttributeError(f"module 'pycmlt.evaluation' has no attribute {name!r}")
