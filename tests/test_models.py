"""CMLTNet and its parts: shapes, ablation switches, backbones, heads."""
import pytest
import torch

from pycmlt.models import CMLTNet, CMLTNetConfig, CifarResNet, WordEncoder, build_backbone, tau_normalize_
from pycmlt.models.heads import CosineClassifier, Fusion


def test_cifar_resnet32_shape_and_depth():
    net = CifarResNet(32)
    convs = sum(isinstance(m, torch.nn.Conv2d) for m in net.modules())
    assert convs == 31  # 1 stem + 3 stages x 5 blocks x 2 convs; + the linear layer = 32 layers
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 64)
    with pytest.raises(ValueError, match="6n\\+2"):
        CifarResNet(33)


def test_backbone_by_name_and_errors():
    assert build_backbone("resnet20").out_features == 64
    with pytest.raises(ValueError, match="unknown backbone"):
        build_backbone("vgg")
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        build_backbone("resnet20", weights="/nonexistent/weights.pt")


def test_backbone_local_weights_round_trip(tmp_path):
    a = build_backbone("resnet20")
    torch.save(a.state_dict(), tmp_path / "w.pt")
    b = build_backbone("resnet20", weights=tmp_path / "w.pt")
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


def test_word_encoder_pooling_ignores_padding():
    enc = WordEncoder(10, 8, 16, pooling="mean")
    ids = torch.tensor([[1, 2, -1], [3, -1, -1], [-1, -1, -1]])
    mask = ids >= 0
    pooled, h = enc(ids, mask)
    torch.testing.assert_close(pooled[0], enc.table[[1, 2]].mean(0))
    torch.testing.assert_close(pooled[1], enc.table[3])
    assert torch.equal(pooled[2], torch.zeros(8)) and h.shape == (3, 16)
    att = WordEncoder(10, 8, 16, pooling="attention")
    pooled, _ = att(ids, mask)
    assert torch.isfinite(pooled).all() and torch.equal(pooled[2], torch.zeros(8))


def test_word_encoder_init_vectors():
    vec = torch.randn(5, 4)
    enc = WordEncoder(5, 4, 8, init_vectors=vec)
    assert torch.equal(enc.table.detach(), vec)
    with pytest.raises(ValueError, match=r"init_vectors must have shape \[5, 4\]"):
        WordEncoder(5, 4, 8, init_vectors=torch.randn(5, 3))


@pytest.mark.parametrize("align,infer,fuse", [(True, True, True), (False, True, True), (True, False, False),
                                              (True, True, False), (False, False, False)])
def test_cmltnet_switches(align, infer, fuse):
    cfg = CMLTNetConfig(num_classes=7, vocab_size=20 if (align or infer) else 0, backbone="resnet20",
                        use_align=align, use_infer=infer, use_fuse=fuse, word_dim=16, text_hidden=24, shared_dim=12)
    model = CMLTNet(cfg)
    images = torch.randn(4, 3, 32, 32)
    ids = torch.tensor([[1, 2], [3, -1], [-1, -1], [5, 19]])
    out = model(images, ids)
    assert out.logits.shape == (4, 7)
    assert (out.s is not None) == infer
    assert (out.z_v is not None) == align and (out.z_t is not None) == align
    assert out.features.shape[1] == (128 if fuse else 64)
    if align or infer:
        assert out.has_words.tolist() == [True, True, False, True]
    # inference needs the image alone
    assert model(images).logits.shape == (4, 7)


def test_cmltnet_config_errors():
    with pytest.raises(ValueError, match="use_fuse needs use_infer"):
        CMLTNetConfig(num_classes=3, vocab_size=5, use_infer=False, use_fuse=True)
    with pytest.raises(ValueError, match="need a vocabulary"):
        CMLTNetConfig(num_classes=3, vocab_size=0)
    model = CMLTNet(CMLTNetConfig(num_classes=3, backbone="resnet20", use_align=False, use_infer=False,
                                  use_fuse=False))
    with pytest.raises(RuntimeError, match="no word space"):
        _ = model.word_table


def test_heads():
    cos = CosineClassifier(8, 3, scale=10.0)
    logits = cos(torch.randn(5, 8))
    assert logits.abs().max() <= 10.0 + 1e-5
    lin = torch.nn.Linear(4, 3)
    tau_normalize_(lin, 1.0)
    torch.testing.assert_close(lin.weight.norm(dim=1), torch.ones(3))
    assert torch.equal(lin.bias, torch.zeros(3))
    for mode, width in (("concat", 16), ("gated", 8)):
        f = Fusion(8, 5, mode)
        assert f(torch.randn(2, 8), torch.randn(2, 5)).shape == (2, width) and f.out_features == width


def test_class_word_profile_tf_idf():
    from pycmlt.models import class_word_profile

    # class 0: images with words {0, 1} and {1}; class 1: {1, 2}; word 1 is in every class (idf 0)
    profile = class_word_profile([[0, 1], [1], [1, 2]], torch.tensor([0, 0, 1]), 2, 3)
    torch.testing.assert_close(profile, torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]))
    # multi-label: image 0 is in both classes, so word 0 is generic (idf 0) and class 0 keeps no word
    multi = class_word_profile([[0], [2]], torch.tensor([[1.0, 1.0], [0.0, 1.0]]), 2, 3)
    torch.testing.assert_close(multi, torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 1.0]]))


def test_semantic_head_scores_prototypes():
    from pycmlt.models import class_word_profile

    profile = class_word_profile([[0], [1]], torch.tensor([0, 1]), 2, 4)
    cfg = CMLTNetConfig(num_classes=2, vocab_size=4, backbone="resnet20", use_fuse=False, semantic_head=True,
                        word_dim=8)
    model = CMLTNet(cfg, class_words=profile).eval()
    out = model(torch.randn(3, 3, 32, 32))
    proto = torch.nn.functional.normalize(model.word_table[:2], dim=1)
    expected = model.classifier(out.h_v) + 10.0 * torch.nn.functional.normalize(out.s, dim=1) @ proto.t()
    torch.testing.assert_close(out.logits, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="class_words must have shape"):
        CMLTNet(cfg, class_words=torch.zeros(3, 4))
    with pytest.raises(ValueError, match="semantic_head needs use_infer"):
        CMLTNetConfig(num_classes=2, vocab_size=4, use_infer=False, use_fuse=False, semantic_head=True)


def test_semantic_scale_defaults_to_the_classifier_scale():
    cosine = CMLTNetConfig(num_classes=3, vocab_size=4, classifier="cosine", cosine_scale=2.0, semantic_head=True)
    assert cosine.semantic_scale == 2.0
    assert CMLTNetConfig(num_classes=3, vocab_size=4, semantic_head=True).semantic_scale == 10.0
    assert CMLTNetConfig(num_classes=3, vocab_size=4, semantic_head=True, semantic_scale=5.0).semantic_scale == 5.0
