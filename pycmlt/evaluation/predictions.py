"""Per-sample test predictions of a run (predictions.npz in the run folder): the distinct item each
sample shows (LTDataset.item_key), its label and the predicted class. Paired comparisons of two
runs on the same test split (pycmlt.evaluation.paired) resample these items."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pycmlt.data.cache import load_npz, save_npz_atomic

PREDICTIONS = "predictions.npz"


def save_predictions(path: str | Path, item_keys, labels, predicted, **meta) -> Path:
    """Writes item keys (str), labels and predicted classes (int) of single-label samples, atomically."""
    keys = np.asarray([str(k) for k in item_keys])
    labels, predicted = np.asarray(labels, dtype=np.int64), np.asarray(predicted, dtype=np.int64)
    if not len(keys) == len(labels) == len(predicted):
        raise ValueError(f"item_keys, labels and predicted must have the same length, got "
                         f"{len(keys)}, {len(labels)}, {len(predicted)}")
    return save_npz_atomic(path, {"format": 1, **meta}, item_keys=keys, labels=labels, predicted=predicted)


def load_predictions(path: str | Path) -> dict[str, np.ndarray]:
    """{"item_keys", "labels", "predicted", "correct"} of a predictions.npz."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: per-sample predictions are written by runs of this "
                                "version of pycmlt (single-label data); train the run again")
    _, arrays = load_npz(path)
    return {**arrays, "correct": arrays["predicted"] == arrays["labels"]}
