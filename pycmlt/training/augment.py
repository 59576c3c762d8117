"""Batched train-time augmentation (random crop with zero padding, horizontal flip) driven by an
explicit generator, so it is reproducible on resume and runs on the batch's device."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def crop_and_flip(images: torch.Tensor, generator: torch.Generator, padding: int = 4,
                  flip: bool = True) -> torch.Tensor:
    b, _, h, w = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (b,), generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (b,), generator=generator)
    rows = (dy[:, None] + torch.arange(h)[None, :]).to(images.device)      # [B, H]
    cols = (dx[:, None] + torch.arange(w)[None, :]).to(images.device)      # [B, W]
    if flip:
        mirror = (torch.rand(b, generator=generator) < 0.5).to(images.device)
        cols = torch.where(mirror[:, None], cols.flip(1), cols)
    idx_b = torch.arange(b, device=images.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[idx_b, rows[:, :, None], cols[:, None, :]]  # [B, H, W, C]
    return out.permute(0, 3, 1, 2).contiguous()
