"""Word-inference metrics against hand-computed examples and a plain-Python reference."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pycmlt.evaluation import word_inference_metrics, word_mean_average_precision, word_recall_at_k

# Three images; the third has no true words (excluded and counted).
RANKED = [[3, 1, 7, 2],
          [5, 5, 0, -1],  # a repeated id counts once; -1 is an empty slot
          [1, 2, 3, 4]]
TRUTH = [{1, 2}, {0, 9}, set()]
# image 0: hits at ranks 2 and 4 -> recall@1 0, @2 1/2, @4 1; AP = (1/2)(1/2 + 2/4) = 1/2
# image 1: hit at rank 3        -> recall@1 0, @2 0,   @4 1/2; AP = (1/min(2,4))(1/3) = 1/6


def test_hand_computed_example():
    m = word_inference_metrics(RANKED, TRUTH, ks=(1, 2, 4))
    assert m.recall == {1: 0.0, 2: pytest.approx(0.25), 4: pytest.approx(0.75)}
    assert m.precision == {1: 0.0, 2: pytest.approx(0.25), 4: pytest.approx((2 / 4 + 1 / 4) / 2)}
    assert m.mean_average_precision == pytest.approx((1 / 2 + 1 / 6) / 2)
    assert (m.num_images, m.num_evaluated, m.num_excluded) == (3, 2, 1)
    d = m.as_dict()
    assert d["recall@4"] == pytest.approx(0.75) and d["map"] == pytest.approx(1 / 3) and d["num_excluded"] == 1
    assert word_recall_at_k(RANKED, TRUTH, 2) == pytest.approx(0.25)
    assert word_mean_average_precision(RANKED, TRUTH) == pytest.approx(1 / 3)


def test_perfect_and_useless_rankings():
    truth = [[4, 2], [0]]
    assert word_mean_average_precision([[2, 4, 1], [0, 1, 2]], truth) == 1.0
    assert word_recall_at_k([[2, 4, 1], [0, 1, 2]], truth, 2) == 1.0
    assert word_mean_average_precision([[1, 3, 5], [1, 2, 3]], truth) == 0.0


def test_ap_normalised_by_min_of_true_count_and_depth():
    # 5 true words, ranked list of 2, both hits: AP@2 = 1 (the list could hold at most 2 hits)
    assert word_mean_average_precision([[0, 1]], [{0, 1, 2, 3, 4}]) == 1.0
    # recall still counts against all 5
    assert word_recall_at_k([[0, 1]], [{0, 1, 2, 3, 4}], 2) == pytest.approx(2 / 5)


def test_truth_forms_agree():
    ranked = np.array(RANKED)
    multi_hot = np.zeros((3, 10), dtype=bool)
    multi_hot[0, [1, 2]] = True
    multi_hot[1, [0, 9]] = True
    padded = np.array([[1, 2], [9, 0], [-1, -1]])
    forms = [TRUTH, [[1, 2, 2], [0, 9], []], multi_hot, torch.from_numpy(multi_hot), padded,
             [torch.tensor([1, 2]), np.array([9, 0]), torch.tensor([], dtype=torch.long)]]
    expected = word_inference_metrics(ranked, TRUTH, ks=(1, 2, 4)).as_dict()
    for truth in forms:
        assert word_inference_metrics(ranked, truth, ks=(1, 2, 4)).as_dict() == pytest.approx(expected)
    torch_ranked = torch.tensor(RANKED)
    assert word_inference_metrics(torch_ranked, TRUTH, ks=(1, 2, 4)).as_dict() == pytest.approx(expected)


def test_no_true_words_anywhere_is_nan_with_a_warning():
    with pytest.warns(RuntimeWarning, match="no image has any true word"):
        m = word_inference_metrics([[1, 2]], [set()], ks=(1,))
    assert math.isnan(m.recall[1]) and math.isnan(m.mean_average_precision)
    assert (m.num_evaluated, m.num_excluded) == (0, 1)
    empty = word_inference_metrics(np.zeros((0, 3), dtype=np.int64), [], ks=(1,))
    assert empty.num_images == 0 and math.isnan(empty.recall[1])


@pytest.mark.parametrize("ranked,truth,ks,error,match", [
    (RANKED, TRUTH, (5,), ValueError, "1 <= k <= 4"),
    (RANKED, TRUTH, (0,), ValueError, "out of range"),
    (RANKED, TRUTH, (1.5,), TypeError, "k must be an int"),
    (RANKED, TRUTH[:2], (1,), ValueError, "truth has 2 entries but ranked has 3 rows"),
    ([[1.0, 2.0]], [{1}], (1,), TypeError, "integer word ids"),
    ([[1, -2]], [{1}], (1,), ValueError, "ids are >= 0, or -1"),
    ([[1, 2], [3]], [{1}, {2}], (1,), ValueError, "same number of predictions"),
    ([1, 2], [{1}, {2}], (1,), ValueError, r"\[N, K\]"),
    ([[1, 2]], [{-3}], (1,), ValueError, r"truth\[0\] holds id -3"),
    ([[1, 2]], [[0.5]], (1,), TypeError, r"truth\[0\] must hold integer"),
    ([[1, 2]], np.ones((1, 3), dtype=np.float32), (1,), TypeError, "boolean \\(multi-hot\\) or integer"),
    ([[1, 2]], np.zeros((2, 3), dtype=bool), (1,), ValueError, "truth has 2 rows"),
    ([[1, 2]], 7, (1,), TypeError, "truth must be"),
])
def test_errors(ranked, truth, ks, error, match):
    with pytest.raises(error, match=match):
        word_inference_metrics(ranked, truth, ks)


def test_num_words_bounds():
    with pytest.raises(ValueError, match="ranked holds id 12, outside a vocabulary of 10"):
        word_inference_metrics([[1, 12]], [{1}], (1,), num_words=10)
    with pytest.raises(ValueError, match="truth holds id 10"):
        word_inference_metrics([[1, 2]], [{10}], (1,), num_words=10)
    assert word_inference_metrics([[1, 2]], [{1}], (1,), num_words=10).recall[1] == 1.0


def reference(ranked, truth, k):
    """Plain-Python recall@k, precision@k and AP over images with true words."""
    recalls, precisions, aps = [], [], []
    for row, true in zip(ranked, truth):
        true = set(true)
        if not true:
            continue
        seen, hits, precision_sum = set(), 0, 0.0
        for j, r in enumerate(row):
            if r >= 0 and r not in seen and r in true:
                hits += 1
                precision_sum += hits / (j + 1)
            seen.add(r)
            if j + 1 == k:
                recalls.append(hits / len(true))
                precisions.append(hits / k)
        aps.append(precision_sum / min(len(true), len(row)))
    mean = lambda xs: sum(xs) / len(xs) if xs else math.nan  # noqa: E731
    return mean(recalls), mean(precisions), mean(aps)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_matches_plain_python_reference(data):
    n = data.draw(st.integers(1, 12))
    depth = data.draw(st.integers(1, 8))
    vocab = data.draw(st.integers(1, 15))
    ranked = [data.draw(st.lists(st.integers(-1, vocab - 1), min_size=depth, max_size=depth)) for _ in range(n)]
    truth = [data.draw(st.sets(st.integers(0, vocab - 1), max_size=6)) for _ in range(n)]
    if not any(truth):
        truth[0] = {0}
    k = data.draw(st.integers(1, depth))
    m = word_inference_metrics(ranked, truth, ks=(k,))
    rec, prec, ap = reference(ranked, truth, k)
    assert m.recall[k] == pytest.approx(rec)
    assert m.precision[k] == pytest.approx(prec)
    assert m.mean_average_precision == pytest.approx(ap)
    assert m.num_excluded == sum(1 for t in truth if not t)


def test_with_word_index_results():
    """The intended pipeline: WordIndex ids -> metrics (a word vector's own word must be found)."""
    from pycmlt.index import WordIndex

    g = torch.Generator().manual_seed(0)
    vectors = torch.randn(50, 16, generator=g)
    index = WordIndex([f"w{i}" for i in range(50)], vectors)
    _, ids = index.search(vectors[:10] + 0.01 * torch.randn(10, 16, generator=g), 5)
    m = word_inference_metrics(ids, [[i] for i in range(10)], ks=(1, 5), num_words=len(index))
    assert m.recall[1] == 1.0 and m.mean_average_precision == 1.0
