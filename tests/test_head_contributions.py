"""CMLTNet's per-head logits (CMLTNet.head_logits) and their scoring (pycmlt.evaluation.head_contributions)."""
import pytest
import torch

from pycmlt.evaluation.head_contributions import head_combinations, head_contributions
from pycmlt.models import CMLTNet, CMLTNetConfig


def _model(**options):
    torch.manual_seed(0)
    config = CMLTNetConfig(num_classes=5, vocab_size=9, backbone="resnet20", word_dim=8, text_hidden=8,
                           shared_dim=8, anchor_dim=6, **options)
    return CMLTNet(config, class_words=torch.rand(5, 9), class_anchors=torch.randn(5, 6)).eval()


@pytest.mark.parametrize("options, names", [
    ({}, ["classifier"]),
    ({"semantic_head": True}, ["classifier", "semantic"]),
    ({"semantic_head": True, "text_anchors": True}, ["classifier", "semantic", "text_anchors"]),
    ({"use_align": False, "use_infer": False, "use_fuse": False, "text_anchors": True}, ["classifier", "text_anchors"]),
])
def test_the_model_logits_are_the_sum_of_its_heads(options, names):
    model = _model(**options)
    images = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        out = model(images)
        heads, features = model.head_logits(out.h_v, out.s)
    assert list(heads) == names
    assert torch.equal(features, out.features)
    assert torch.equal(head_combinations(heads)["all"], out.logits)  # same order of additions: bit-equal


def test_combinations_of_one_two_and_three_heads():
    a, b, c = (torch.full((2, 3), float(v)) for v in (1, 2, 4))
    assert set(head_combinations({"x": a})) == {"all"}
    two = head_combinations({"x": a, "y": b})
    assert set(two) == {"all", "x only", "y only"} and torch.equal(two["all"], a + b)
    three = head_combinations({"x": a, "y": b, "z": c})
    assert set(three) == {"all", "x only", "y only", "z only", "without x", "without y", "without z"}
    assert torch.equal(three["without y"], a + c) and torch.equal(three["all"], a + b + c)


def test_contributions_score_each_head_per_shot_group():
    # class 0 many-shot (200 training images), class 1 few-shot (5); two test images of each class.
    labels = torch.tensor([0, 0, 1, 1])
    votes_0 = torch.tensor([[1.0, 0.0]] * 4)              # always class 0
    votes_1 = torch.tensor([[0.0, 3.0], [0.0, 0.5], [0.0, 3.0], [0.0, 3.0]])  # class 1, strong but once weak
    got = head_contributions({"classifier": votes_0, "semantic": votes_1}, labels, torch.tensor([200.0, 5.0]))
    assert got["classifier only"]["many"] == 1.0 and got["classifier only"]["few"] == 0.0
    assert got["semantic only"]["top1"] == 0.5 and got["semantic only"]["few"] == 1.0
    assert got["all"]["top1"] == 0.75 and got["all"]["many"] == 0.5 and got["all"]["few"] == 1.0
    shifted = head_contributions({"classifier": votes_0, "semantic": votes_1}, labels, torch.tensor([200.0, 5.0]),
                                 read_logits=lambda x: x - torch.tensor([0.0, 10.0]))
    assert shifted["all"]["few"] == 0.0  # the reading function is applied before the argmax


@pytest.mark.parametrize("heads, match", [
    ({}, "at least one"),
    ({"x": torch.zeros(2, 3), "y": torch.zeros(2, 4)}, "one \\[N, C\\] shape"),
    ({"x": torch.zeros(3)}, "one \\[N, C\\] shape"),
])
def test_bad_heads_are_refused(heads, match):
    with pytest.raises(ValueError, match=match):
        head_combinations(heads)
