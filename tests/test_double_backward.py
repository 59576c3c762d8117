"""Second-order gradients through the fused backends (create_graph=True: Hessian-vector products,
gradient penalties) equal those of the `torch` backend and of plain PyTorch, never the silent zeros
of differentiating gradients that a kernel wrote as constants."""
import pytest
import torch
import torch.nn.functional as F
from conftest import fast_backend_params

from pycmlt import ops


def _onehot(t, c):
    return (t[:, None] == torch.arange(c)).float()


# name -> (loss of (x [6, 5], t [6], backend), plain PyTorch loss of (x, t) or None)
CASES = {
    "cross_entropy": (lambda x, t, be: ops.class_balanced_cross_entropy(x, t, backend=be),
                      lambda x, t: F.cross_entropy(x, t)),
    "cross_entropy_options": (
        lambda x, t, be: ops.class_balanced_cross_entropy(x, t, class_counts=[9, 5, 3, 2, 1], beta=0.9,
                                                          ldam_max_margin=0.4, label_smoothing=0.1,
                                                          reduction="sum", backend=be), None),
    "cross_entropy_focal": (lambda x, t, be: ops.class_balanced_cross_entropy(x, t, focal_gamma=2.0, backend=be),
                            None),
    "bce": (lambda x, t, be: ops.class_balanced_bce(x, _onehot(t, 5), backend=be),
            lambda x, t: F.binary_cross_entropy_with_logits(x, _onehot(t, 5))),
    "bce_focal_none": (lambda x, t, be: ops.class_balanced_bce(x, _onehot(t, 5), focal_gamma=1.5, reduction="none",
                                                               backend=be).pow(2).sum(), None),
    "alignment": (lambda x, t, be: ops.alignment_loss(x, x.flip(0), backend=be),
                  lambda x, t: (1 - F.cosine_similarity(x, x.flip(0), dim=1)).mean()),
    "alignment_mse": (lambda x, t, be: ops.alignment_loss(x, x.roll(1, 0) * 2, kind="mse", reduction="sum",
                                                          backend=be), None),
    "fused_linear_ce": (lambda x, t, be: ops.fused_linear_class_balanced_cross_entropy(
        x, x[:4].T @ x[:4], t % 5, chunk_rows=4, backend=be), None),
    "fused_linear_ce_none": (lambda x, t, be: ops.fused_linear_class_balanced_cross_entropy(
        x, x[:4].T @ x[:4], t % 5, reduction="none", chunk_rows=4, backend=be).pow(2).sum(), None),
    "fused_linear_bce": (lambda x, t, be: ops.fused_linear_class_balanced_bce(
        x, x[1:4].T @ x[1:4], _onehot(t, 5), chunk_rows=4, backend=be), None),
    "contrastive": (lambda x, t, be: ops.cross_modal_contrastive(x, x.roll(1, 0) + 0.3 * x, logit_scale=1.5,
                                                                 backend=be), None),
    "contrastive_supervised": (lambda x, t, be: ops.cross_modal_contrastive(
        x, x.flip(0), labels=t % 3, logit_scale=2.0, symmetric=False, backend=be), None),
}


def _inputs():
    g = torch.Generator().manual_seed(0)
    return torch.randn(6, 5, generator=g), torch.tensor([0, 4, 2, 2, 1, 3])


def _hvp(fn, x, v):
    return torch.autograd.functional.hvp(fn, x, v)[1]


@pytest.mark.parametrize("device,backend", [p for p in fast_backend_params() if p.values[0] == "cpu"])
@pytest.mark.parametrize("case", CASES)
def test_hvp_matches_torch_backend(case, device, backend):
    ours, plain = CASES[case]
    x, t = _inputs()
    v = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    got = _hvp(lambda z: ours(z, t, backend), x, v)
    want = _hvp(lambda z: ours(z, t, "torch"), x, v)
    assert want.abs().max() > 1e-3  # the case has curvature: a zero result would be caught
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    if plain is not None:
        torch.testing.assert_close(got, _hvp(lambda z: plain(z, t), x, v), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("device,backend", [p for p in fast_backend_params() if p.values[0] == "cpu"])
def test_gradient_penalty_step_matches_pytorch(device, backend):
    """The issue's reproduction: loss + 10 |d loss / d logits|^2, backward to a linear layer's weight."""
    g = torch.Generator().manual_seed(0)
    feats, t = torch.randn(16, 8, generator=g), torch.randint(0, 5, (16,), generator=g)
    weight0 = torch.randn(5, 8, generator=g)

    def weight_grad(loss_fn):
        weight = weight0.clone().requires_grad_(True)
        logits = feats @ weight.T
        loss = loss_fn(logits)
        (grad,) = torch.autograd.grad(loss, logits, create_graph=True)
        (loss + 10 * grad.pow(2).sum()).backward()
        return weight.grad

    want = weight_grad(lambda z: F.cross_entropy(z, t))
    got = weight_grad(lambda z: ops.class_balanced_cross_entropy(z, t, backend=backend))
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("device,backend", [p for p in fast_backend_params() if p.values[0] == "cpu"])
def test_first_order_unchanged_and_graph_free(device, backend):
    """Without create_graph the gradient is the kernel's and does not itself require grad."""
    x, t = _inputs()
    x.requires_grad_(True)
    (grad,) = torch.autograd.grad(ops.class_balanced_cross_entropy(x, t, backend=backend), x)
    assert not grad.requires_grad
    torch.testing.assert_close(grad, torch.autograd.grad(F.cross_entropy(x, t), x)[0], rtol=1e-5, atol=1e-6)


def test_in_place_change_before_double_backward_is_an_error():
    if "cpu" not in ops.available_backends("cpu"):
        pytest.skip("the C++ extension is not built")
    x, t = _inputs()
    leaf = x.clone().requires_grad_(True)
    logits = leaf * 1.0
    loss = ops.class_balanced_cross_entropy(logits, t, backend="cpu")
    with torch.no_grad():
        logits.add_(1.0)
    with pytest.raises(RuntimeError, match="modified in place"):
        torch.autograd.grad(loss, leaf, create_graph=True)


@pytest.mark.parametrize("device,backend", [p for p in fast_backend_params() if p.values[0] == "cpu"])
def test_registered_custom_op_autograd_has_double_backward(device, backend):
    """The torch.library autograd formula (what torch.compile traces; also a direct torch.ops call)."""
    op = torch.ops.pycmlt.cb_cross_entropy_triton if backend == "triton" else torch.ops.pycmlt.cb_cross_entropy
    x, t = _inputs()
    v = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    got = _hvp(lambda z: op(z, t, None, None, None, 1.0, 0.0, 0.0, -100, 1, True)[0], x, v)
    torch.testing.assert_close(got, _hvp(lambda z: F.cross_entropy(z, t), x, v), rtol=1e-4, atol=1e-5)
