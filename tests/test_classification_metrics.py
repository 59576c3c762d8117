"""Long-tail metrics against hand-computed values (docs/evaluation.md)."""
import numpy as np
import pytest

from pycmlt.evaluation.classification_metrics import (average_precision, longtail_accuracy, multilabel_metrics,
                                                      shot_groups)
from pycmlt.evaluation.plots import plot_per_class_accuracy


def test_shot_group_boundaries():
    g = shot_groups([101, 100, 20, 19])
    assert g["many"].tolist() == [True, False, False, False]
    assert g["medium"].tolist() == [False, True, True, False]
    assert g["few"].tolist() == [False, False, False, True]


def test_longtail_accuracy_group_means_are_class_means():
    counts = [500, 50, 5]
    targets = [0] * 8 + [1] * 2 + [2] * 2
    preds = [0] * 8 + [1, 0] + [0, 0]
    r = longtail_accuracy(preds, targets, counts)
    assert r.top1 == pytest.approx(9 / 12)
    assert r.mean_class_accuracy == pytest.approx((1 + 0.5 + 0) / 3)
    assert (r.many, r.medium, r.few) == (1.0, 0.5, 0.0)
    assert r.group_sizes == {"many": 1, "medium": 1, "few": 1}
    assert r.test_counts == [8, 2, 2]


def test_class_absent_from_test_is_not_counted():
    r = longtail_accuracy([0, 0], [0, 0], [500, 5])
    assert r.per_class == [1.0, None] and r.few is None and r.mean_class_accuracy == 1.0
    with pytest.raises(ValueError, match="targets must be in"):
        longtail_accuracy([0], [2], [1, 1])


def test_average_precision_by_hand():
    scores = np.array([[0.9, 0.1], [0.8, 0.7], [0.3, 0.2], [0.1, 0.9]])
    targets = np.array([[1, 0], [0, 0], [1, 0], [0, 0]])
    ap = average_precision(scores, targets)
    assert ap[0] == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert np.isnan(ap[1])
    m = multilabel_metrics(np.log(scores / (1 - scores)), targets)
    assert m["mAP"] == pytest.approx(ap[0])
    # predictions >= 0.5: class 0 -> rows 0, 1 (tp 1, fp 1, fn 1): F1 = 0.5; class 1 -> rows 1, 3 (fp 2)
    assert m["micro_f1"] == pytest.approx(2 * 1 / (2 * 1 + 3 + 1))
    assert m["macro_f1"] == pytest.approx((0.5 + 0.0) / 2)


def test_per_class_plot_is_written(tmp_path):
    path = plot_per_class_accuracy({"a": [1.0, 0.5, None], "b": [0.9, 0.6, 0.2]}, [500, 50, 5], tmp_path / "p.png")
    assert path.stat().st_size > 10_000 and path.read_bytes()[:4] == b"\x89PNG"
