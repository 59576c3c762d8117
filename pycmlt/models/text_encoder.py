"""f_t: the text encoder over an example's descriptional words (docs/method.md). A learnable word-embedding
table E (|V| x e), pooled over the words (masked mean or attention), then an MLP."""
from __future__ import annotations

import torch
from torch import nn


class WordEncoder(nn.Module):
    def __init__(self, vocab_size: int, word_dim: int, hidden_dim: int, *, pooling: str = "mean",
                 init_vectors: torch.Tensor | None = None):
        super().__init__()
        if vocab_size < 1:
            raise ValueError(f"vocab_size must be >= 1, got {vocab_size}")
        if pooling not in ("mean", "attention"):
            raise ValueError(f"pooling must be 'mean' or 'attention', got {pooling!r}")
        self.embedding = nn.Embedding(vocab_size, word_dim)
        nn.init.normal_(self.embedding.weight, std=word_dim ** -0.5)
        if init_vectors is not None:
            if init_vectors.shape != (vocab_size, word_dim):
                raise ValueError(f"init_vectors must have shape [{vocab_size}, {word_dim}], "
                                 f"got {tuple(init_vectors.shape)}")
            with torch.no_grad():
                self.embedding.weight.copy_(init_vectors)
        self.pooling = pooling
        if pooling == "attention":
            self.attn = nn.Sequential(nn.Linear(word_dim, word_dim), nn.Tanh(), nn.Linear(word_dim, 1, bias=False))
        self.mlp = nn.Sequential(nn.Linear(word_dim, hidden_dim), nn.ReLU(inplace=True),
                                 nn.Linear(hidden_dim, hidden_dim))
        self.out_features = hidden_dim

    @property
    def table(self) -> torch.Tensor:
        """The word-embedding table E [|V|, e]."""
        return self.embedding.weight

    def pool(self, word_ids: torch.Tensor, word_mask: torch.Tensor) -> torch.Tensor:
        """Pooled word embedding [B, e] of each example's words (zeros for an example with none)."""
        emb = self.embedding(word_ids.clamp_min(0)) * word_mask.unsqueeze(-1)
        if self.pooling == "mean":
            count = word_mask.sum(1, keepdim=True).clamp_min(1)
            return emb.sum(1) / count
        scores = self.attn(emb).squeeze(-1).masked_fill(~word_mask, float("-inf"))
        weights = torch.softmax(scores, dim=1).nan_to_num(0.0)  # rows without words: all -inf -> 0
        return (weights.unsqueeze(-1) * emb).sum(1)

    def forward(self, word_ids: torch.Tensor, word_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(pooled word embedding [B, e], text representation h_t [B, hidden])."""
        pooled = self.pool(word_ids, word_mask)
        return pooled, self.mlp(pooled)
