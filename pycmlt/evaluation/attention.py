"""Where a classifier looks (the CMLTNet paper's model-attention case study): Grad-CAM heatmaps
(Selvaraju et al. 2017, captum's LayerGradCam) of a class's logit at the backbone's last spatial
feature map, upsampled to the image."""
from __future__ import annotations

import torch
from torch import nn


def last_feature_map_layer(backbone: nn.Module, image_size: int) -> nn.Module:
    """The backbone module that finishes last (in a forward pass of one image) with a 4-D output
    wider than 1 x 1: the last convolutional feature map, whatever the architecture."""
    found: list[nn.Module] = []

    def remember(module, _inputs, output):
        if isinstance(output, torch.Tensor) and output.dim() == 4 and output.shape[-1] * output.shape[-2] > 1:
            found.append(module)

    handles = [m.register_forward_hook(remember) for m in backbone.modules() if m is not backbone]
    was_training = backbone.training
    try:
        backbone.eval()
        parameter = next(backbone.parameters())
        with torch.no_grad():
            backbone(torch.zeros(1, 3, image_size, image_size, device=parameter.device, dtype=parameter.dtype))
    finally:
        for h in handles:
            h.remove()
        backbone.train(was_training)
    if not found:
        raise ValueError(f"the backbone has no feature map wider than 1 x 1 on {image_size}px images: "
                         "Grad-CAM needs one")
    return found[-1]


def grad_cam(model, images: torch.Tensor, classes: torch.Tensor, layer: nn.Module | None = None) -> torch.Tensor:
    """[B, H, W] Grad-CAM of each image's logit of `classes[b]` (ReLU'd, bilinearly upsampled to the
    image, scaled to max 1; all zeros where no location supports the class). model: a CMLTNet (its
    forward's .logits are explained; put in eval mode); layer defaults to last_feature_map_layer."""
    from captum.attr import LayerGradCam

    if images.dim() != 4:
        raise ValueError(f"images must be [B, 3, H, W], got shape {tuple(images.shape)}")
    classes = torch.as_tensor(classes, dtype=torch.long, device=images.device)
    if classes.shape != (images.shape[0],):
        raise ValueError(f"classes must hold one class per image ([{images.shape[0]}]), got {tuple(classes.shape)}")
    model.eval()
    if layer is None:
        layer = last_feature_map_layer(model.visual, images.shape[-1])
    cam = LayerGradCam(lambda x: model(x).logits, layer)
    with torch.enable_grad():
        maps = cam.attribute(images, target=classes, relu_attributions=True)
    maps = LayerGradCam.interpolate(maps.detach(), tuple(images.shape[-2:]), interpolate_mode="bilinear")
    maps = maps.squeeze(1).clamp_min(0).float()
    peak = maps.flatten(1).max(dim=1).values.view(-1, 1, 1)
    return torch.where(peak > 0, maps / peak.clamp_min(1e-12), torch.zeros_like(maps)).cpu()
