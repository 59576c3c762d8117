"""WordIndex: flat search against brute force (torch matmul + topk), IVF recall, input kinds and
dtypes, persistence round trip and corrupt directories, defined behaviour and errors."""
import json
import math
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pycmlt.index import (
    FORMAT_VERSION,
    IndexFormatError,
    WordIndex,
    ZeroVectorWarning,
    default_nlist,
    default_nprobe,
    faiss_gpu_available,
)

GPU = faiss_gpu_available() and torch.cuda.is_available()


def make_vocab(v, d, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [f"word{i}" for i in range(v)], torch.randn(v, d, generator=g)


def brute_force(vectors, queries, k, normalize=True):
    x, q = vectors.double(), queries.double()
    if normalize:
        x, q = F.normalize(x, dim=1), F.normalize(q, dim=1)
    return torch.topk(q @ x.T, k, dim=1)


def assert_same_topk(scores, ids, vectors, queries, k, normalize=True, atol=1e-5):
    """Tie-aware equality with the brute-force top-k: every returned id's exact score equals the
    exact k-best score at its rank (so a different id is accepted only for an exact-score tie)."""
    scores, ids = torch.as_tensor(scores).cpu(), torch.as_tensor(ids).cpu()
    ref_scores, ref_ids = brute_force(vectors, queries, k, normalize)
    x, q = vectors.double(), queries.double()
    if normalize:
        x, q = F.normalize(x, dim=1), F.normalize(q, dim=1)
    exact_of_returned = (q @ x.T).gather(1, ids)
    torch.testing.assert_close(exact_of_returned, ref_scores, atol=atol, rtol=0)
    torch.testing.assert_close(scores.double(), ref_scores, atol=atol, rtol=0)
    assert (ids == ref_ids).float().mean() > 0.99  # random data: ties are rare
    assert all(len(set(row.tolist())) == k for row in ids)


# ---------------------------------------------------------------------------- exactness of flat


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("k", [1, 10, 37])
def test_flat_equals_brute_force(normalize, k):
    words, vectors = make_vocab(3000, 48)
    queries = torch.randn(257, 48, generator=torch.Generator().manual_seed(1))
    index = WordIndex(words, vectors, normalize=normalize)
    scores, ids = index.search(queries, k)
    assert scores.shape == ids.shape == (257, k) and scores.dtype == torch.float32 and ids.dtype == torch.int64
    assert_same_topk(scores, ids, vectors, queries, k, normalize)
    assert index.recall_against_flat(queries, k) == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("qdtype", [torch.float16, torch.bfloat16, torch.float64])
def test_low_and_high_precision_queries(qdtype):
    words, vectors = make_vocab(1000, 32)
    queries = torch.randn(50, 32, generator=torch.Generator().manual_seed(2)).to(qdtype)
    index = WordIndex(words, vectors.to(qdtype))
    scores, ids = index.search(queries, 5)
    assert scores.dtype == torch.float32
    # the index holds the vectors as float32: compare with brute force on the same rounded inputs
    assert_same_topk(scores, ids, vectors.to(qdtype).float(), queries.float(), 5)


def test_numpy_in_numpy_out_and_torch_in_torch_out():
    words, vectors = make_vocab(500, 16)
    q = torch.randn(9, 16, generator=torch.Generator().manual_seed(3))
    index = WordIndex(words, vectors.numpy())
    s_np, i_np = index.search(q.numpy(), 4)
    assert isinstance(s_np, np.ndarray) and s_np.dtype == np.float32 and i_np.dtype == np.int64
    s_t, i_t = index.search(q, 4)
    assert isinstance(s_t, torch.Tensor) and s_t.device.type == "cpu"
    np.testing.assert_array_equal(i_np, i_t.numpy())
    s_l, i_l = index.search(q.tolist(), 4)  # nested lists: NumPy out
    np.testing.assert_array_equal(i_l, i_np)
    s_64, i_64 = index.search(q.numpy().astype(np.float64), 4)
    np.testing.assert_array_equal(i_64, i_np)


def test_single_query_vector_and_empty_batch():
    words, vectors = make_vocab(200, 8)
    index = WordIndex(words, vectors)
    q = torch.randn(8)
    s, i = index.search(q, 3)
    assert s.shape == i.shape == (3,)
    s2, i2 = index.search(q[None], 3)
    assert torch.equal(i, i2[0])
    assert index.words_for(q, 3) == [[words[j] for j in i.tolist()]]
    s0, i0 = index.search(torch.empty(0, 8), 3)
    assert s0.shape == i0.shape == (0, 3)
    assert index.words_for(np.zeros((0, 8), np.float32), 3) == []


def test_batching_gives_the_same_result():
    words, vectors = make_vocab(700, 24)
    q = torch.randn(100, 24, generator=torch.Generator().manual_seed(4))
    index = WordIndex(words, vectors)
    s_all, i_all = index.search(q, 6)
    s_b, i_b = index.search(q, 6, batch_size=7)
    assert torch.equal(i_all, i_b) and torch.equal(s_all, s_b)


def test_callers_data_is_not_modified():
    words, vectors = make_vocab(100, 8)
    v_np = vectors.numpy().copy()
    index = WordIndex(words, v_np)
    np.testing.assert_array_equal(v_np, vectors.numpy())
    q_np = np.random.default_rng(0).standard_normal((5, 8)).astype(np.float32) * 3
    q_t = torch.from_numpy(q_np.copy())
    before = q_np.copy()
    index.search(q_np, 2)
    index.search(q_np[1:4], 2)  # a view
    index.search(q_t, 2)
    np.testing.assert_array_equal(q_np, before)
    np.testing.assert_array_equal(q_t.numpy(), before)


def test_vectors_with_grad_and_stored_vectors():
    words, vectors = make_vocab(50, 6)
    table = torch.nn.Embedding(50, 6)
    index = WordIndex(words, table.weight)  # requires_grad: detached
    np.testing.assert_allclose(index.vectors, F.normalize(table.weight.detach(), dim=1).numpy(), atol=1e-6)
    raw = WordIndex(words, vectors, normalize=False)
    np.testing.assert_array_equal(raw.vectors, vectors.numpy())


def test_words_for_and_scores_agree_with_search():
    words, vectors = make_vocab(300, 12)
    q = torch.randn(4, 12)
    index = WordIndex(words, vectors)
    scores, ids = index.search(q, 5)
    ws = index.words_with_scores(q, 5)
    assert [[w for w, _ in row] for row in ws] == [[words[j] for j in row] for row in ids.tolist()]
    assert [s for row in ws for _, s in row] == pytest.approx(scores.flatten().tolist())
    assert index.words_for(q, 5) == [[w for w, _ in row] for row in ws]


def test_nearest_word_of_a_word_vector_is_itself():
    words, vectors = make_vocab(400, 32)
    index = WordIndex(words, vectors)
    assert index.words_for(vectors[[5, 77, 399]] * 2.5, 1) == [["word5"], ["word77"], ["word399"]]


def test_k_larger_than_vocabulary_is_clamped():
    words, vectors = make_vocab(6, 4)
    index = WordIndex(words, vectors)
    s, i = index.search(torch.randn(3, 4), 50)
    assert s.shape == (3, 6)
    assert sorted(i[0].tolist()) == list(range(6))
    assert len(index.words_for(torch.randn(4), 10)[0]) == 6


def test_zero_vectors_warn_and_score_zero():
    words = ["a", "b", "c", "d"]
    vectors = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    with pytest.warns(ZeroVectorWarning, match="'b'"):
        index = WordIndex(words, vectors)
    scores, ids = index.search(torch.tensor([[1.0, 0.0]]), 4)
    assert ids[0, 0].item() == 0 and scores[0, 0].item() == pytest.approx(1.0)
    assert scores[0, ids[0].tolist().index(1)].item() == 0.0
    zero_query = index.search(torch.zeros(1, 2), 2)[0]
    assert torch.equal(zero_query, torch.zeros(1, 2))  # zero query: every score is 0, no NaN


def test_introspection():
    words, vectors = make_vocab(100, 8)
    index = WordIndex(words, vectors)
    assert len(index) == 100 and index.dim == 8 and index.kind == "flat" and index.nprobe is None
    assert "word3" in index and "nope" not in index
    assert index.id_of("word42") == 42 and index.ids_of(["word1", "word0"]) == [1, 0]
    with pytest.raises(KeyError, match="'nope' is not in the vocabulary"):
        index.id_of("nope")
    assert "kind='flat'" in repr(index) and "words=100" in repr(index)
    assert index.device == "cpu" or GPU


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize("words,vectors,error,match", [
    (["a", "b", "a"], torch.randn(3, 4), ValueError, "duplicate word 'a' at positions 0 and 2"),
    ([], torch.randn(0, 4), ValueError, "vocabulary is empty"),
    ("abc", torch.randn(3, 4), TypeError, "single string"),
    (["a", 3], torch.randn(2, 4), TypeError, r"words\[1\] must be a str"),
    (["a", ""], torch.randn(2, 4), ValueError, r"words\[1\] is an empty string"),
    (["a", "b"], torch.randn(3, 4), ValueError, "2 words but 3 vectors"),
    (["a", "b"], torch.randn(2), ValueError, r"shape \[V, D\]"),
    (["a", "b"], torch.randn(2, 0), ValueError, "dimension 0"),
    (["a", "b"], torch.randint(0, 5, (2, 4)), TypeError, "floating-point tensor"),
    (["a", "b"], np.ones((2, 4), dtype=np.int32), TypeError, "floating-point array"),
    (["a", "b"], np.ones((2, 4), dtype=bool), TypeError, "floating-point array"),
    (["a", "b"], torch.ones(2, 4, dtype=torch.complex64), TypeError, "floating-point tensor"),
    (["a", "b"], "vectors", TypeError, "float matrix"),
])
def test_bad_vocabulary(words, vectors, error, match):
    with pytest.raises(error, match=match):
        WordIndex(words, vectors)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nonfinite_word_vector_names_the_word(bad):
    words, vectors = make_vocab(10, 4)
    vectors[7, 2] = bad
    with pytest.raises(ValueError, match=r"word 'word7' \(row 7\) contains NaN or inf"):
        WordIndex(words, vectors)


def test_bad_queries_and_k():
    words, vectors = make_vocab(20, 4)
    index = WordIndex(words, vectors)
    with pytest.raises(ValueError, match="queries have dimension 5 but the index holds 4-dimensional"):
        index.search(torch.randn(3, 5), 2)
    with pytest.raises(ValueError, match="queries have dimension 3"):
        index.search(np.zeros(3, np.float32), 2)
    with pytest.raises(ValueError, match=r"shape \[N, D\]"):
        index.search(torch.randn(2, 3, 4), 2)
    with pytest.raises(TypeError, match="floating-point tensor"):
        index.search(torch.ones(2, 4, dtype=torch.int64), 2)
    with pytest.raises(TypeError, match="floating-point array"):
        index.search(np.ones((2, 4), dtype=bool), 2)
    q = torch.randn(5, 4)
    q[3, 1] = float("nan")
    with pytest.raises(ValueError, match="queries row 3 contains NaN"):
        index.search(q, 2)
    with pytest.raises(ValueError, match="queries row 3 contains NaN"):
        index.search(q, 2, batch_size=2)  # the row number is global, not within the batch
    for k, error in [(0, ValueError), (-2, ValueError), (True, TypeError), (2.0, TypeError), ("3", TypeError)]:
        with pytest.raises(error, match="k must be"):
            index.search(torch.randn(2, 4), k)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        index.search(torch.randn(2, 4), 1, batch_size=0)


def test_bad_options():
    words, vectors = make_vocab(100, 4)
    with pytest.raises(ValueError, match="kind must be one of"):
        WordIndex(words, vectors, kind="hnsw")
    with pytest.raises(ValueError, match="kind='ivf' only"):
        WordIndex(words, vectors, nlist=4)
    with pytest.raises(ValueError, match="kind='ivf' only"):
        WordIndex(words, vectors, nprobe=4)
    with pytest.raises(ValueError, match=r"nlist must be >= 1 and <= 100"):
        WordIndex(words, vectors, kind="ivf", nlist=101)
    with pytest.raises(ValueError, match=r"nprobe must be >= 1 and <= 2"):
        WordIndex(words, vectors, kind="ivf", nlist=2, nprobe=3)
    with pytest.raises(TypeError, match="normalize must be True or False"):
        WordIndex(words, vectors, normalize="yes")
    with pytest.raises(ValueError, match="device must be"):
        WordIndex(words, vectors, device="tpu")
    flat = WordIndex(words, vectors)
    with pytest.raises(ValueError, match="kind='ivf' only"):
        flat.nprobe = 3
    with pytest.raises(ValueError, match="kind='ivf' only"):
        flat.tune_nprobe(torch.randn(3, 4))


@pytest.mark.skipif(faiss_gpu_available(), reason="the installed FAISS has GPU support")
def test_cuda_without_faiss_gpu_says_how_to_install():
    words, vectors = make_vocab(10, 4)
    with pytest.raises(ValueError, match=r"no GPU support.*pycmlt\[gpu\]"):
        WordIndex(words, vectors, device="cuda")
    assert WordIndex(words, vectors, device="auto").device == "cpu"


# ---------------------------------------------------------------------------- IVF


def test_default_ivf_parameters():
    assert default_nlist(100_000) == 1265
    assert default_nlist(1000) == 25  # capped at V / 39 (FAISS's training-points rule)
    assert default_nlist(10) == 1
    assert default_nprobe(1265) == 317 and default_nprobe(1) == 1


def test_ivf_recall_at_default_nprobe_on_100k_random_words():
    """The documented default (nlist ~ 4 sqrt(V), nprobe = nlist / 4) reaches recall@10 >= 0.95
    against flat on 100k isotropic random words of dimension 32."""
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((100_000, 32), dtype=np.float32)
    words = [f"w{i}" for i in range(100_000)]
    index = WordIndex(words, vectors, kind="ivf")
    assert index.nlist == 1265 and index.nprobe == 317
    queries = rng.standard_normal((300, 32), dtype=np.float32)
    recall = index.recall_against_flat(queries, 10)
    assert recall >= 0.95, recall
    index.nprobe = 8  # far fewer probes on the same data: recall is measurably lower
    assert index.recall_against_flat(queries, 10) < 0.6


def test_tune_nprobe_finds_the_smallest_nprobe_reaching_the_target():
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((20_000, 64), dtype=np.float32)
    index = WordIndex([f"w{i}" for i in range(20_000)], vectors, kind="ivf")
    tune, check = rng.standard_normal((200, 64), dtype=np.float32), rng.standard_normal((300, 64), dtype=np.float32)
    chosen = index.tune_nprobe(tune, k=10, target_recall=0.95)
    assert index.nprobe == chosen and 1 < chosen < index.nlist
    assert index.recall_against_flat(tune, 10) >= 0.95
    assert index.recall_against_flat(check, 10) >= 0.92  # held-out queries from the same distribution
    index.nprobe = chosen - 1
    assert index.recall_against_flat(tune, 10) < 0.95  # smallest: one fewer probe misses the target


def test_ivf_with_all_lists_probed_is_exact():
    words, vectors = make_vocab(2000, 16)
    index = WordIndex(words, vectors, kind="ivf", nlist=20, nprobe=20)
    q = torch.randn(50, 16, generator=torch.Generator().manual_seed(5))
    scores, ids = index.search(q, 8)
    assert_same_topk(scores, ids, vectors, q, 8)


def test_ivf_short_results_are_padded_with_minus_one():
    words, vectors = make_vocab(400, 8)
    index = WordIndex(words, vectors, kind="ivf", nlist=10, nprobe=1)
    q = torch.randn(20, 8, generator=torch.Generator().manual_seed(7))
    scores, ids = index.search(q, 400)  # one list holds far fewer than 400 words
    missing = ids == -1
    assert missing.any() and (~missing).any()
    assert torch.isneginf(scores[missing]).all() and torch.isfinite(scores[~missing]).all()
    lists = index.words_for(q, 400)  # empty slots are skipped
    assert [len(row) for row in lists] == (~missing).sum(dim=1).tolist()
    assert all(0 < len(row) < 400 for row in lists)


# ---------------------------------------------------------------------------- persistence


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_save_load_round_trip(tmp_path, kind):
    words, vectors = make_vocab(3000, 24)
    words[5] = "naïve café \"quoted\"\nline"  # any string survives the vocabulary file
    opts = {"nlist": 30, "nprobe": 7} if kind == "ivf" else {}
    index = WordIndex(words, vectors, kind=kind, normalize=(kind == "flat"), **opts)
    index.save(tmp_path / "idx")
    loaded = WordIndex.load(tmp_path / "idx")
    assert loaded.words == index.words and loaded.kind == kind and loaded.normalize == index.normalize
    assert (loaded.nlist, loaded.nprobe) == (index.nlist, index.nprobe)
    q = torch.randn(64, 24, generator=torch.Generator().manual_seed(6))
    for a, b in zip(index.search(q, 10), loaded.search(q, 10)):
        assert torch.equal(a, b)
    np.testing.assert_array_equal(loaded.vectors, index.vectors)
    meta = json.loads((tmp_path / "idx" / "meta.json").read_text())
    assert meta["format"] == "pycmlt.WordIndex" and meta["format_version"] == FORMAT_VERSION
    assert meta["num_words"] == 3000 and meta["dim"] == 24 and meta["kind"] == kind
    # saving again over the earlier index is allowed
    index.save(tmp_path / "idx")
    assert WordIndex.load(tmp_path / "idx").words == index.words


@pytest.fixture
def saved(tmp_path):
    words, vectors = make_vocab(300, 8)
    path = tmp_path / "saved"
    WordIndex(words, vectors).save(path)
    return path


def _rewrite_meta(path, **changes):
    meta = json.loads((path / "meta.json").read_text())
    meta.update(changes)
    (path / "meta.json").write_text(json.dumps(meta))


def test_load_missing_or_foreign_directories(tmp_path, saved):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        WordIndex.load(tmp_path / "nothing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(IndexFormatError, match="it is a file"):
        WordIndex.load(tmp_path / "file")
    (tmp_path / "empty").mkdir()
    with pytest.raises(IndexFormatError, match="meta.json is missing"):
        WordIndex.load(tmp_path / "empty")
    (saved / "words.json").unlink()
    with pytest.raises(IndexFormatError, match="vocabulary\\) is missing"):
        WordIndex.load(saved)


@pytest.mark.parametrize("corrupt,match", [
    (lambda p: (p / "meta.json").write_text("{not json"), "meta.json is not valid JSON"),
    (lambda p: _rewrite_meta(p, format="something.else"), "does not describe a pycmlt WordIndex"),
    (lambda p: _rewrite_meta(p, format_version=FORMAT_VERSION + 1), "newer than this pycmlt reads"),
    (lambda p: _rewrite_meta(p, format_version="1"), "format_version is missing or not an integer"),
    (lambda p: _rewrite_meta(p, dim="8"), "field 'dim'"),
    (lambda p: _rewrite_meta(p, kind="hnsw"), "unknown index kind"),
    (lambda p: _rewrite_meta(p, kind="ivf", nlist=4, nprobe=1), "holds a IndexFlatIP"),
    (lambda p: (p / "words.json").write_text(json.dumps([f"word{i}" for i in range(299)] + ["other"])),
     "vocabulary was edited"),
    (lambda p: (p / "words.json").write_text("[1, 2"), "words.json is not valid JSON"),
    (lambda p: (p / "index.faiss").write_bytes((p / "index.faiss").read_bytes()[:-100]), "truncated, corrupt"),
    (lambda p: (p / "index.faiss").unlink(), "FAISS index\\) is missing"),
])
def test_load_corrupt_directory(saved, corrupt, match):
    corrupt(saved)
    with pytest.raises(IndexFormatError, match=match):
        WordIndex.load(saved)


def test_load_index_that_faiss_cannot_read(saved):
    from pycmlt.index._persist import sha256_file

    (saved / "index.faiss").write_bytes(b"garbage" * 10)
    _rewrite_meta(saved, index_sha256=sha256_file(saved / "index.faiss"))  # checksum consistent, content not
    with pytest.raises(IndexFormatError, match="FAISS cannot read"):
        WordIndex.load(saved)


def test_load_mismatched_parts_from_two_saves(tmp_path, saved):
    words, vectors = make_vocab(200, 8)
    WordIndex(words, vectors).save(tmp_path / "other")
    shutil.copy(tmp_path / "other" / "index.faiss", saved / "index.faiss")
    with pytest.raises(IndexFormatError, match="does not match meta.json"):
        WordIndex.load(saved)
    from pycmlt.index._persist import sha256_file

    _rewrite_meta(saved, index_sha256=sha256_file(saved / "index.faiss"))
    with pytest.raises(IndexFormatError, match="holds 200 vectors .* vocabulary has 300 words"):
        WordIndex.load(saved)


def test_save_refuses_foreign_directories(tmp_path):
    words, vectors = make_vocab(10, 4)
    index = WordIndex(words, vectors)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="holds other files"):
        index.save(tmp_path / "busy")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(FileExistsError, match="is a file"):
        index.save(tmp_path / "afile")
    index.save(tmp_path / "new" / "nested")
    assert WordIndex.load(tmp_path / "new" / "nested").words == tuple(words)


# ---------------------------------------------------------------------------- GPU


@pytest.mark.skipif(not GPU, reason="needs FAISS with GPU support and a CUDA GPU")
@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_gpu_index_matches_cpu(kind, tmp_path):
    words, vectors = make_vocab(5000, 64)
    opts = {"nlist": 50, "nprobe": 50} if kind == "ivf" else {}
    cpu = WordIndex(words, vectors, kind=kind, device="cpu", **opts)
    gpu = WordIndex(words, vectors, kind=kind, device="cuda", **opts)
    assert gpu.device == "cuda:0"
    q = torch.randn(300, 64, device="cuda")
    s, i = gpu.search(q, 10)
    assert s.device.type == "cuda" and i.device.type == "cuda"
    assert_same_topk(s, i, vectors, q.cpu(), 10)
    assert (i.cpu() == cpu.search(q.cpu(), 10)[1]).float().mean() > 0.99
    big_k = gpu.search(q[:3], 3000)[1]  # beyond the GPU selection limit: served by the CPU copy
    assert big_k.shape == (3, 3000)
    gpu.save(tmp_path / "g")
    assert WordIndex.load(tmp_path / "g", device="cpu").search(q.cpu(), 10)[1].shape == (300, 10)
    assert math.isclose(gpu.recall_against_flat(q, 10), 1.0, abs_tol=1e-3)


@pytest.mark.parametrize("magnitude", [1e20, 1e30, 1e37])
def test_huge_vectors_normalise_without_overflow(magnitude):
    """Rows around 1e30 overflowed the float32 sum of squares (every score became 0). Scaling each
    row by its largest entry first keeps the unit vectors exact."""
    words, vectors = make_vocab(20, 8, seed=3)
    queries = torch.randn(3, 8, generator=torch.Generator().manual_seed(4))
    index = WordIndex(words, vectors * magnitude)
    scores, ids = index.search(queries * magnitude, 5)
    assert_same_topk(scores, ids, vectors, queries, 5)
    assert np.abs(np.asarray(scores)).max() > 0.1
