"""Text-anchor head: each class is a fixed point in a frozen pretrained text space (the embedding of
its name and its most telling training words), the image features are projected into that space and
scored by cosine with a learned temperature. A tail class seen in a handful of images still has a
well-placed anchor, because the anchor comes from language, not from its images (the language head of
VL-LTR and LIFT's text-initialised classifier, in a form that needs no text at test time: the anchors
are computed once from training data and stored in the model)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class TextAnchorHead(nn.Module):
    """logits = exp(log_scale) * cos(W h, a_c) for the class anchors a_c (a buffer, never trained)."""

    def __init__(self, in_features: int, anchors: torch.Tensor, init_scale: float):
        super().__init__()
        if anchors.dim() != 2:
            raise ValueError(f"anchors must be [num_classes, dim], got shape {tuple(anchors.shape)}")
        if not (math.isfinite(init_scale) and init_scale > 0):
            raise ValueError(f"init_scale must be a finite number > 0, got {init_scale!r}")
        self.project = nn.Linear(in_features, anchors.shape[1])
        self.register_buffer("anchors", anchors.float().clone())
        self.log_scale = nn.Parameter(torch.tensor(math.log(init_scale)))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        projected = F.normalize(self.project(features), dim=1)
        return self.log_scale.exp() * projected @ F.normalize(self.anchors, dim=1).to(projected.dtype).t()
