"""pycmlt._extension reads what the build compiled in (pycmlt::compiled_with_cuda, csrc/build_info.cpp)
instead of asking torch's dispatcher through a private API."""
import pytest
import torch

from pycmlt import _extension

pytestmark = pytest.mark.skipif(not _extension.native_available(), reason="the C++ extension is not built")


def test_compiled_with_cuda_matches_the_registered_cuda_kernels():
    reported = torch.ops.pycmlt.compiled_with_cuda()
    assert isinstance(reported, bool)
    assert _extension.CUDA_KERNELS_COMPILED is reported
    # The build flag and the dispatcher agree (the private API is only this test's cross-check).
    has_kernel = getattr(torch._C, "_dispatch_has_kernel_for_dispatch_key", None)
    if has_kernel is None:
        pytest.skip("this torch has no _dispatch_has_kernel_for_dispatch_key to cross-check against")
    for op in ("cb_cross_entropy", "ce_loss_aux", "cb_bce", "contrastive_stats", "alignment"):
        assert has_kernel(f"pycmlt::{op}", "CUDA") is reported, op


@pytest.mark.parametrize("compiled, gpu, expected", [(True, True, True), (True, False, False), (False, True, False)])
def test_cuda_kernels_available_needs_the_kernels_and_a_gpu(monkeypatch, compiled, gpu, expected):
    monkeypatch.setattr(_extension, "CUDA_KERNELS_COMPILED", compiled)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu)
    assert _extension.cuda_kernels_available() is expected
