"""The eager autograd path of the fused loss ops (an autograd.Function around the kernel, below the
dispatcher's autograd key) against the registered custom-op autograd that torch.compile traces:
same values and gradients; torch.func.grad works; no graph is built without grad."""
import pytest
import torch
import torch.nn.functional as F
from conftest import fast_backend_params

from pycmlt import ops

CASES = {
    "cross_entropy": (lambda x, t, backend: ops.class_balanced_cross_entropy(x, t, backend=backend),
                      lambda x, t: F.cross_entropy(x, t)),
    "bce": (lambda x, t, backend: ops.class_balanced_bce(x, (t[:, None] == torch.arange(x.shape[1])).float(),
                                                          backend=backend),
            lambda x, t: F.binary_cross_entropy_with_logits(x, (t[:, None] == torch.arange(x.shape[1])).float())),
    "alignment": (lambda x, t, backend: ops.alignment_loss(x, x.flip(0).detach(), backend=backend),
                  lambda x, t: (1 - F.cosine_similarity(x, x.flip(0).detach(), dim=1)).mean()),
}


def inputs(device):
    g = torch.Generator().manual_seed(0)
    return torch.randn(6, 5, generator=g).to(device), torch.tensor([0, 4, 2, 2, 1, 3], device=device)


@pytest.mark.parametrize("device,backend", fast_backend_params())
@pytest.mark.parametrize("case", CASES)
def test_func_grad_matches_pytorch(case, device, backend):
    ours, reference = CASES[case]
    x, t = inputs(device)
    got = torch.func.grad(lambda z: ours(z, t, backend))(x)
    torch.testing.assert_close(got, torch.func.grad(lambda z: reference(z, t))(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("device,backend", fast_backend_params())
@pytest.mark.parametrize("case", CASES)
def test_eager_equals_compiled_custom_op(case, device, backend):
    ours, _ = CASES[case]
    x, t = inputs(device)
    eager_x = x.clone().requires_grad_(True)
    eager = ours(eager_x, t, backend)
    eager.backward()
    compiled_x = x.clone().requires_grad_(True)
    compiled = torch.compile(lambda z: ours(z, t, backend), fullgraph=True, backend="aot_eager")(compiled_x)
    compiled.backward()
    torch.testing.assert_close(eager, compiled, rtol=0, atol=0)
    torch.testing.assert_close(eager_x.grad, compiled_x.grad, rtol=0, atol=0)


@pytest.mark.parametrize("device,backend", fast_backend_params())
@pytest.mark.parametrize("case", CASES)
def test_no_graph_without_grad(case, device, backend):
    ours, reference = CASES[case]
    x, t = inputs(device)
    with torch.no_grad():
        loss = ours(x.requires_grad_(True), t, backend)
    assert loss.grad_fn is None
    torch.testing.assert_close(loss, reference(x.detach(), t), rtol=1e-5, atol=1e-6)
    assert ours(x.detach(), t, backend).grad_fn is None
