"""Text side helpers: pretrained word vectors (offline MiniLM) to initialise the word-embedding table."""
from pycmlt.text.pretrained import SOURCES, default_cache_dir, default_text, pca_reduce, pretrained_word_vectors

__all__ = ["pretrained_word_vectors", "pca_reduce", "default_cache_dir", "default_text", "SOURCES"]
