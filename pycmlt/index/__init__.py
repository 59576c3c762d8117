"""Nearest-word search in a word-embedding space (docs/evaluation.md): `WordIndex` over FAISS (GPU
when the installed FAISS has GPU support and sees a GPU, CPU otherwise), persisted as a directory
holding the FAISS index, the vocabulary and versioned metadata."""
from pycmlt.index._faiss import default_nlist, default_nprobe, faiss_gpu_available, faiss_info
from pycmlt.index._persist import FORMAT_VERSION, IndexFormatError
from pycmlt.index.word_index import WordIndex, ZeroVectorWarning

__all__ = ["WordIndex", "IndexFormatError", "ZeroVectorWarning", "FORMAT_VERSION", "default_nlist",
           "default_nprobe", "faiss_gpu_available", "faiss_info"]
