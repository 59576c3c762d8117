"""Visual encoders by name: the built-in CIFAR ResNets (resnet20/32/44/56/110), or any torchvision
or timm model when that package is installed. Never downloads weights: a local weights file may be
given instead."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn

from pycmlt.models.resnet_cifar import CifarResNet

BUILTIN = {f"resnet{d}": d for d in (20, 32, 44, 56, 110)}


def build_backbone(name: str, *, weights: str | Path | None = None) -> nn.Module:
    """A module mapping images [B, 3, H, W] to features [B, F], with `out_features` = F."""
    if name in BUILTIN:
        model = CifarResNet(BUILTIN[name])
    elif name.startswith("timm:") or name.startswith("torchvision:"):
        source, _, model_name = name.partition(":")
        model = _external(source, model_name)
    else:
        raise ValueError(f"unknown backbone {name!r}: use one of {sorted(BUILTIN)}, "
                         "'torchvision:<name>' or 'timm:<name>' (with that package installed)")
    if weights is not None:
        _load_local_weights(model, Path(weights))
    return model


class _Headless(nn.Module):
    """An ImageNet-style classifier with its final layer removed."""

    def __init__(self, model: nn.Module, out_features: int):
        super().__init__()
        self.model = model
        self.out_features = out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).flatten(1)


def _external(source: str, model_name: str) -> nn.Module:
    if importlib.util.find_spec(source) is None:
        raise ImportError(f"backbone '{source}:{model_name}' needs the {source} package: pip install {source}")
    if source == "timm":
        import timm

        model = timm.create_model(model_name, pretrained=False, num_classes=0)
        return _Headless(model, model.num_features)
    import torchvision

    model = torchvision.models.get_model(model_name, weights=None)
    for attr in ("fc", "classifier", "head", "heads"):
        head = getattr(model, attr, None)
        if head is None:
            continue
        last = head[-1] if isinstance(head, nn.Sequential) else head
        if isinstance(last, nn.Linear):
            features = last.in_features
            if isinstance(head, nn.Sequential):
                head[-1] = nn.Identity()
            else:
                setattr(model, attr, nn.Identity())
            return _Headless(model, features)
    raise ValueError(f"cannot find the classification head of torchvision model {model_name!r}")


def _load_local_weights(model: nn.Module, path: Path) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"backbone weights file not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    target = model.model if isinstance(model, _Headless) else model
    missing, unexpected = target.load_state_dict(state, strict=False)
    head_only = all(k.split(".")[0] in ("fc", "classifier", "head", "heads") for k in unexpected)
    if missing or not head_only:
        raise ValueError(f"weights in {path} do not fit the backbone: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
