"""Classifier heads and the fusion of visual features with the inferred semantic vector."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class CosineClassifier(nn.Module):
    """logits = scale * cos(f, w_c): the normalised classifier of LDAM-DRW and cosine heads.

    Cosines lie in [-1, 1], so the scale sets how peaked the softmax can get (and how logit offsets
    such as balanced softmax's log-prior compare with the class evidence). `learn_scale=True` makes
    it a trained temperature (stored as its log, so it stays positive).
    """

    def __init__(self, in_features: int, num_classes: int, scale: float = 1.0, learn_scale: bool = False):
        super().__init__()
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"cosine_scale must be a finite number > 0, got {scale!r}")
        self.weight = nn.Parameter(torch.empty(num_classes, in_features).uniform_(-1, 1).renorm_(2, 0, 1e-5).mul_(1e5))
        log_scale = torch.tensor(math.log(scale))
        if learn_scale:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Model files written before the scale was stored keep the scale the model was built with.
        state_dict.setdefault(prefix + "log_scale", self.log_scale.detach().clone())
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def scale(self) -> float:
        return float(self.log_scale.detach().exp())

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        cosines = F.normalize(features, dim=1) @ F.normalize(self.weight, dim=1).t()
        return self.log_scale.exp().to(cosines.dtype) * cosines


def build_classifier(kind: str, in_features: int, num_classes: int, cosine_scale: float = 1.0,
                     learn_cosine_scale: bool = False) -> nn.Module:
    if kind == "linear":
        return nn.Linear(in_features, num_classes)
    if kind == "cosine":
        return CosineClassifier(in_features, num_classes, cosine_scale, learn_cosine_scale)
    raise ValueError(f"classifier must be 'linear' or 'cosine', got {kind!r}")


def tau_normalize_(classifier: nn.Module, tau: float) -> None:
    """tau-normalisation (Kang et al. 2020): w_c <- w_c / ||w_c||^tau, in place (bias is zeroed)."""
    with torch.no_grad():
        w = classifier.weight
        w.div_(w.norm(dim=1, keepdim=True).clamp_min(1e-12).pow(tau))
        if getattr(classifier, "bias", None) is not None:
            classifier.bias.zero_()


class Fusion(nn.Module):
    """f = fuse(h_v, psi(s)): concatenation, or a gated sum g * h_v + (1 - g) * psi(s)."""

    def __init__(self, visual_dim: int, semantic_dim: int, mode: str = "concat"):
        super().__init__()
        if mode not in ("concat", "gated"):
            raise ValueError(f"fusion must be 'concat' or 'gated', got {mode!r}")
        self.mode = mode
        self.psi = nn.Sequential(nn.Linear(semantic_dim, visual_dim), nn.ReLU(inplace=True))
        if mode == "gated":
            self.gate = nn.Linear(2 * visual_dim, visual_dim)
        self.out_features = 2 * visual_dim if mode == "concat" else visual_dim

    def forward(self, h_v: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        p = self.psi(s)
        if self.mode == "concat":
            return torch.cat([h_v, p], dim=1)
        g = torch.sigmoid(self.gate(torch.cat([h_v, p], dim=1)))
        return g * h_v + (1 - g) * p
