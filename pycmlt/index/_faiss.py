"""FAISS access in one place: the import (lazy, so `import pycmlt` does not pay for it), GPU
detection, index construction, moving an index to a GPU, and the IVF parameters."""
from __future__ import annotations

import math
import threading

# FAISS GPU kernels select at most this many neighbours per query and probe at most this many lists
# (faiss/gpu/utils/DeviceDefs.cuh, GPU_MAX_SELECTION_K); larger requests run on the CPU copy.
GPU_MAX_K = 2048
GPU_MAX_NPROBE = 2048

_GPU_INSTALL_HINT = ("install the GPU build of FAISS: pip install 'pycmlt[gpu]' (faiss-gpu, CUDA 12); "
                     "faiss-gpu and faiss-cpu install the same `faiss` module, so if `faiss` still lacks GPU "
                     "support afterwards run: pip install --force-reinstall --no-deps faiss-gpu")


def faiss():
    """The faiss module (imported on first use)."""
    try:
        import faiss as _faiss
    except ImportError as exc:  # faiss-cpu is a hard dependency; say how to repair a broken install
        raise ImportError("pycmlt.index needs FAISS: pip install faiss-cpu (or faiss-gpu for GPU search)") from exc
    return _faiss


def faiss_gpu_available() -> bool:
    """True when the installed FAISS was built with GPU support and sees at least one GPU."""
    f = faiss()
    if not hasattr(f, "StandardGpuResources"):
        return False
    try:
        return f.get_num_gpus() > 0
    except Exception:
        return False


def faiss_info() -> dict:
    """What FAISS this process uses: version, GPU support, visible GPUs, CPU threads, SIMD level."""
    f = faiss()
    gpu_build = hasattr(f, "StandardGpuResources")
    return {
        "faiss_version": getattr(f, "__version__", None),
        "gpu_build": gpu_build,
        "num_gpus": (f.get_num_gpus() if gpu_build else 0),
        "omp_threads": f.omp_get_max_threads(),
        "compile_options": f.get_compile_options().strip() if hasattr(f, "get_compile_options") else None,
    }


def resolve_device(device) -> int | None:
    """None for the CPU, else the GPU number FAISS should use; errors say what is missing."""
    text = str(device) if device is not None else "auto"
    if text == "auto":
        return 0 if faiss_gpu_available() else None
    if text == "cpu":
        return None
    if text == "cuda" or text.startswith("cuda:"):
        gpu = 0 if text == "cuda" else _gpu_number(text)
        f = faiss()
        if not hasattr(f, "StandardGpuResources"):
            raise ValueError(f"device={text!r}: the installed FAISS ({getattr(f, '__version__', '?')}) has no GPU "
                             f"support; {_GPU_INSTALL_HINT}")
        visible = f.get_num_gpus()
        if gpu >= visible:
            raise ValueError(f"device={text!r}: FAISS sees {visible} GPU(s)")
        return gpu
    raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")


def _gpu_number(text: str) -> int:
    try:
        number = int(text.split(":", 1)[1])
    except ValueError:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {text!r}") from None
    if number < 0:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {text!r}")
    return number


_resources: dict[int, object] = {}
_resources_lock = threading.Lock()


def gpu_resources(gpu: int):
    """One StandardGpuResources per GPU for the whole process (each holds scratch memory)."""
    with _resources_lock:
        if gpu not in _resources:
            _resources[gpu] = faiss().StandardGpuResources()
        return _resources[gpu]


def to_gpu(cpu_index, gpu: int):
    return faiss().index_cpu_to_gpu(gpu_resources(gpu), gpu, cpu_index)


def default_nlist(num_words: int) -> int:
    """IVF lists for `num_words` vectors: about 4 * sqrt(V), and at most V / 39 so that k-means has
    the 39 training points per centroid FAISS asks for (1 list below 39 words)."""
    return max(1, min(int(round(4 * math.sqrt(num_words))), num_words // 39))


def default_nprobe(nlist: int) -> int:
    """Lists probed per query by default: a quarter of them (rounded up). See WordIndex for the
    recall this gives and WordIndex.tune_nprobe to choose it for a given query distribution."""
    return max(1, math.ceil(nlist / 4))


def build_cpu_index(kind: str, vectors, nlist: int | None):
    """A trained, filled FAISS inner-product index on the CPU holding `vectors` (float32 [V, D])."""
    f = faiss()
    dim = vectors.shape[1]
    if kind == "flat":
        index = f.IndexFlatIP(dim)
    else:
        # (FAISS's Python wrapper keeps the quantizer alive as long as the IVF index.)
        index = f.IndexIVFFlat(f.IndexFlatIP(dim), dim, nlist, f.METRIC_INNER_PRODUCT)
        index.cp.seed = 1234  # deterministic spherical k-means (IndexIVF sets spherical for inner product)
        index.train(vectors)
    index.add(vectors)
    return index


def index_kind(index) -> str | None:
    """'flat' or 'ivf' for the two index types WordIndex builds, None for anything else."""
    f = faiss()
    if isinstance(index, f.IndexFlat):
        return "flat"
    if isinstance(index, f.IndexIVFFlat):
        return "ivf"
    return None


def set_nprobe(index, nprobe: int) -> None:
    index.nprobe = nprobe


def stored_vectors(cpu_index):
    """The float32 [V, D] vectors a flat or IVF-flat index holds (a copy)."""
    if index_kind(cpu_index) == "ivf":
        cpu_index.make_direct_map()
    return cpu_index.reconstruct_n(0, cpu_index.ntotal)
