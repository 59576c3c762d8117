"""Test set-up: Triton runs in its CPU interpreter when there is no GPU; shared parametrisations."""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

from pycmlt.ops import available_backends  # noqa: E402

# Property tests draw the same examples on every run ("deterministic", the default), so CI verdicts are
# reproducible; `pytest --hypothesis-profile=explore` draws fresh random examples.
settings.register_profile("deterministic", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("PYCMLT_HYPOTHESIS_PROFILE", "deterministic"))

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def fast_backend_params():
    """(device, backend) pairs of every non-reference backend that can run here."""
    return [pytest.param(d, b, id=f"{d}-{b}") for d in DEVICES for b in available_backends(d) if b != "torch"]


def all_backend_params():
    return [pytest.param(d, b, id=f"{d}-{b}") for d in DEVICES for b in available_backends(d)]


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    """Point the pycmlt cache (e.g. the decoded-image cache of file datasets) at a fresh folder."""
    root = tmp_path / "pycmlt-cache"
    monkeypatch.setenv("PYCMLT_CACHE_DIR", str(root))
    return root
