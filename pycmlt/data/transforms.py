"""Image transforms on uint8 tensors [3, H, W] (torchvision is not a dependency).

Datasets store or load images as uint8 [3, H, W] at the configured resolution; their `transform`
turns one into the normalised float image of a `Sample`. `eval_transform` only normalises;
`train_transform` adds the standard small-image augmentation (random crop with zero padding, as in
CIFAR training, and a horizontal flip). `augment_batch` does the same to a whole float batch on any
device, for training loops that augment on the GPU instead of in DataLoader workers.

Randomness comes from torch's global generator (seeded per worker by the DataLoader) unless a
`generator` is passed.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Compose:
    def __init__(self, transforms: Sequence[Callable]):
        self.transforms = list(transforms)

    def __call__(self, img):
        for t in self.transforms:
            img = t(img)
        return img

    def __repr__(self) -> str:
        return "Compose(" + ", ".join(map(repr, self.transforms)) + ")"


class RandomCrop:
    """Pad by `padding` pixels on each side with `fill`, then crop a random window of the original size."""

    def __init__(self, padding: int, fill: float = 0, generator: torch.Generator | None = None):
        if padding < 0:
            raise ValueError(f"padding must be >= 0, got {padding}")
        self.padding, self.fill, self.generator = int(padding), fill, generator

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        p = self.padding
        if p == 0:
            return img
        _, h, w = img.shape
        padded = img.new_full((img.shape[0], h + 2 * p, w + 2 * p), self.fill)
        padded[:, p:p + h, p:p + w] = img
        dy, dx = torch.randint(0, 2 * p + 1, (2,), generator=self.generator).tolist()
        return padded[:, dy:dy + h, dx:dx + w]

    def __repr__(self) -> str:
        return f"RandomCrop(padding={self.padding})"


class RandomHorizontalFlip:
    def __init__(self, p: float = 0.5, generator: torch.Generator | None = None):
        self.p, self.generator = float(p), generator

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if torch.rand((), generator=self.generator).item() < self.p:
            return img.flip(-1)
        return img

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class Normalize:
    """uint8 [3, H, W] (or float in [0, 1]) -> float32 (x/255 - mean) / std."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
        if (self.std <= 0).any():
            raise ValueError(f"std must be > 0, got {list(std)}")

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        x = img.to(torch.float32)
        if img.dtype == torch.uint8:
            x = x / 255.0
        return (x - self.mean) / self.std

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()})"


def eval_transform(mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> Callable:
    return Normalize(mean, std)


def train_transform(mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD, *,
                    padding: int | None = None, image_size: int = 32, flip: bool = True,
                    generator: torch.Generator | None = None) -> Callable:
    """Random crop with zero padding (default padding = image_size // 8: 4 pixels at 32x32) and a
    random horizontal flip, then normalisation."""
    padding = max(1, image_size // 8) if padding is None else padding
    steps: list[Callable] = [RandomCrop(padding, 0, generator)]
    if flip:
        steps.append(RandomHorizontalFlip(0.5, generator))
    steps.append(Normalize(mean, std))
    return Compose(steps)


def augment_batch(images: torch.Tensor, *, padding: int = 4, flip: bool = True, fill: float = 0.0,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Random crop with padding + horizontal flip applied per image to a batch [B, C, H, W] at once
    (any dtype, any device; the random draws use `generator` on the CPU)."""
    if images.dim() != 4:
        raise ValueError(f"images must be [B, C, H, W], got shape {list(images.shape)}")
    b, _, h, w = images.shape
    out = images
    if padding > 0:
        padded = F.pad(images, (padding, padding, padding, padding), value=fill)
        dy = torch.randint(0, 2 * padding + 1, (b,), generator=generator).to(images.device)
        dx = torch.randint(0, 2 * padding + 1, (b,), generator=generator).to(images.device)
        rows = (dy[:, None] + torch.arange(h, device=images.device)[None, :])  # [B, H]
        cols = (dx[:, None] + torch.arange(w, device=images.device)[None, :])  # [B, W]
        bi = torch.arange(b, device=images.device)[:, None, None]
        out = padded.permute(0, 2, 3, 1)[bi, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    if flip:
        do = (torch.rand(b, generator=generator) < 0.5).to(images.device)
        out = torch.where(do[:, None, None, None], out.flip(-1), out)
    return out.contiguous()


def image_mean_std(images_uint8: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std (in [0, 1] units) of uint8 images [N, 3, H, W] or [N, H, W, 3]."""
    x = images_uint8
    if x.dim() != 4:
        raise ValueError("expected a 4-D uint8 image tensor")
    if x.shape[-1] == 3 and x.shape[1] != 3:
        x = x.permute(0, 3, 1, 2)
    x = x.to(torch.float64).div_(255.0).transpose(0, 1).reshape(3, -1)
    mean, std = x.mean(1), x.std(1).clamp_min(1e-3)
    return tuple(round(v, 6) for v in mean.tolist()), tuple(round(v, 6) for v in std.tolist())
