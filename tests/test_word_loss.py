"""CMLTNet's word-prediction loss (L_CMI): per-image normalisation, the multi-positive softmax, and the
per-word weights (training/word_weights.py); and the cosine classifier's scale."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pycmlt.models import CMLTNet
from pycmlt.models.heads import CosineClassifier
from pycmlt.training.config import TrainConfig
from pycmlt.training.model_setup import model_config
from pycmlt.training.objective import CMLTNetObjective
from pycmlt.training.recipes import cosine_scale
from pycmlt.training.word_weights import discriminative_word_weights, word_class_counts


def _objective(word_loss, word_weight=None, vocab=7):
    config = TrainConfig(method="cmltnet", word_loss=word_loss, backbone="resnet32")
    model = CMLTNet(model_config(config, num_classes=3, vocab_size=vocab))
    return CMLTNetObjective(config, model, torch.tensor([5.0, 3.0, 1.0]), word_weight, multi_label=False), model


def _batch(vocab=7):
    g = torch.Generator().manual_seed(0)
    s = torch.randn(4, 128, generator=g, dtype=torch.float64)
    table = torch.randn(vocab, 128, generator=g, dtype=torch.float64) * 0.2
    word_ids = torch.tensor([[0, 3, -1], [2, -1, -1], [1, 4, 6], [5, 0, -1]])
    return s, table, word_ids, word_ids >= 0


@pytest.mark.parametrize("weighted", [False, True])
def test_softmax_word_loss_is_the_per_image_mean_of_log_softmax(weighted):
    weight = torch.linspace(0.5, 2.0, 7) if weighted else None
    objective, _ = _objective("softmax", weight)
    s, table, word_ids, mask = _batch()
    got = objective.word_prediction(s, word_ids, mask, table)
    log_p = (s @ table.t()).log_softmax(1)
    expected = 0.0
    for i in range(4):
        words = word_ids[i][mask[i]]
        a = weight[words].double() if weighted else torch.ones(len(words), dtype=torch.float64)
        expected += -(a * log_p[i, words]).sum() / len(words)
    torch.testing.assert_close(got.double(), expected / 4, rtol=1e-6, atol=1e-9)


def test_bce_word_loss_sums_over_the_vocabulary():
    """Each true word gets a per-image gradient, not 1/|V| of one (the old mean over images x words)."""
    objective, _ = _objective("bce")
    s, table, word_ids, mask = _batch()
    got = objective.word_prediction(s, word_ids, mask, table)
    target = torch.zeros(4, 7, dtype=torch.float64)
    for i in range(4):
        target[i, word_ids[i][mask[i]]] = 1
    expected = F.binary_cross_entropy_with_logits(s @ table.t(), target, reduction="sum") / 4
    torch.testing.assert_close(got.double(), expected, rtol=1e-6, atol=1e-9)
    legacy, _ = _objective("bce-mean")
    torch.testing.assert_close(legacy.word_prediction(s, word_ids, mask, table).double(), expected / 7,
                               rtol=1e-6, atol=1e-9)


def test_discriminative_weights_favour_frequent_class_specific_words():
    # words: 0 seen once (class 0); 1 seen 20 times, all in class 1; 2 seen in every class alike; 3 never
    # seen; 4 balances the class totals (41, 40, 40), so the prior is about uniform.
    counts = torch.tensor([[1.0, 0, 0], [0, 20, 0], [20, 20, 20], [0, 0, 0], [20, 0, 20]])
    w = discriminative_word_weights(counts)
    assert w[1] > 3 * w[0] and w[1] > 10 * w[2]
    assert w[3] == 0
    torch.testing.assert_close(w[[0, 1, 2, 4]].mean(), torch.tensor(1.0))


def test_word_class_counts_count_each_image_once_per_class():
    counts = word_class_counts([[0, 1], [1], [1, 2], []], torch.tensor([0, 0, 1, 2]), 3, 3)
    torch.testing.assert_close(counts, torch.tensor([[1.0, 0, 0], [2, 1, 0], [0, 1, 0]]))
    multi = word_class_counts([[0], [0]], torch.tensor([[1.0, 1, 0], [0, 1, 0]]), 3, 1)
    torch.testing.assert_close(multi, torch.tensor([[1.0, 2, 0]]))


@pytest.mark.parametrize("method,expected", [("ce", 16.0), ("balanced-softmax", 16.0), ("ldam-drw", 1.0)])
def test_cosine_classifier_scale_defaults(method, expected):
    config = TrainConfig(method=method, classifier="cosine")
    assert cosine_scale(config) == expected
    model = CMLTNet(model_config(config, num_classes=4, vocab_size=0))
    assert isinstance(model.classifier, CosineClassifier)
    assert model.classifier.scale == pytest.approx(expected)
    assert cosine_scale(config.replace(cosine_scale=7.5)) == 7.5


def test_cosine_scale_reaches_the_logits_and_can_be_learned():
    fixed = CosineClassifier(5, 3, scale=10.0)
    x = torch.randn(4, 5)
    cos = F.normalize(x, dim=1) @ F.normalize(fixed.weight, dim=1).t()
    torch.testing.assert_close(fixed(x), 10.0 * cos)
    assert not any(p is fixed.log_scale for p in fixed.parameters())
    learned = CosineClassifier(5, 3, scale=10.0, learn_scale=True)
    learned(x).sum().backward()
    assert learned.log_scale.grad is not None and learned.log_scale.grad.abs() > 0
    assert learned.scale == pytest.approx(10.0)


def test_old_model_files_without_a_stored_scale_still_load():
    model = CosineClassifier(5, 3, scale=4.0)
    state = {k: v for k, v in model.state_dict().items() if k != "log_scale"}
    fresh = CosineClassifier(5, 3, scale=4.0)
    fresh.load_state_dict(state)
    assert fresh.scale == pytest.approx(4.0)


@pytest.mark.parametrize("field,value", [("cosine_scale", 0.0), ("cosine_scale", math.inf),
                                         ("word_loss", "mse"), ("word_weighting", "idf")])
def test_word_and_scale_options_are_validated(field, value):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: value})


def test_cmltnet_default_classification_loss_works_on_multi_label_data():
    from pycmlt.training.objective import ClassificationLoss

    loss = ClassificationLoss(TrainConfig(method="cmltnet"), torch.tensor([9.0, 3.0, 1.0]), multi_label=True)
    assert loss.recipe == "cb-focal"
    value = loss(torch.randn(4, 3), torch.tensor([[1.0, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]]))
    assert torch.isfinite(value)
    assert ClassificationLoss(TrainConfig(method="cmltnet"), torch.tensor([9.0, 3.0, 1.0]),
                              multi_label=False).recipe == "ldam-drw"
