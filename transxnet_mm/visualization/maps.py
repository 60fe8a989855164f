"""Effective receptive fields and Grad-CAM of TransXNet models (the paper's
Figs. 2, 6, 7 and 8), and the images they are computed on.

ERF: Luo et al. 2016, computed and scored as RepLKNet's ``visualize_erf.py``
and ``analyze_erf.py`` do. Grad-CAM: Selvaraju et al. 2017.
"""
import os
import os.path as osp
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import Layer, capture, frozen_parameters, run_until_captured

IMAGE_EXTS = ('.jpg', '.jpeg', '.png', '.bmp')
# ERF score thresholds: shares of the contribution (RepLKNet's).
ERF_THRESHOLDS = (0.2, 0.3, 0.5, 0.99)
# ImageNet mean / std (RGB), for a model without a data preprocessor.
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


def input_normalisation(model: nn.Module) -> Tuple[Tensor, Tensor, bool]:
    """Mean and std (3, 1, 1) of the model's data preprocessor, and whether
    the network sees RGB."""
    dp = getattr(model, 'data_preprocessor', None)
    mean, std = getattr(dp, 'mean', None), getattr(dp, 'std', None)
    if mean is None or std is None:
        mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    flags = [getattr(dp, a) for a in ('_channel_conversion', 'to_rgb',
                                      'channel_conversion') if hasattr(dp, a)]
    rgb = any(flags) if flags else True
    return mean.detach().float().cpu(), std.detach().float().cpu(), rgb


def list_images(folder: str, num: Optional[int] = None) -> List[str]:
    """The first ``num`` images of ``folder`` by name, or a single image
    file."""
    if osp.isfile(folder):
        return [folder]
    if not osp.isdir(folder):
        raise FileNotFoundError(f'Image folder {folder} does not exist.')
    files = sorted(osp.join(folder, f) for f in os.listdir(folder)
                   if f.lower().endswith(IMAGE_EXTS))
    if not files:
        raise ValueError(f'No image ({", ".join(IMAGE_EXTS)}) in {folder}.')
    return files[:num] if num else files


def load_image(path: str, shape: Sequence[int]) -> np.ndarray:
    """The image at ``path`` as RGB uint8, resized to ``shape`` (H, W) by
    PIL bicubic (the classification configs' test resize)."""
    from PIL import Image

    if not osp.isfile(path):
        raise FileNotFoundError(f'Image {path} does not exist.')
    with Image.open(path) as img:
        img = img.convert('RGB').resize((int(shape[1]), int(shape[0])),
                                        Image.BICUBIC)
        return np.asarray(img).copy()


def to_input(image: np.ndarray, mean: Tensor, std: Tensor, rgb: bool = True,
             device: str = 'cpu') -> Tensor:
    """An RGB uint8 (H, W, 3) image as the normalised (1, 3, H, W) input."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()
    if not rgb:
        x = x.flip(0)
    return ((x - mean) / std).unsqueeze(0).to(device)


def erf_maps(backbone: nn.Module, layers: Sequence[Layer],
             inputs: Iterable[Tensor],
             on_image: Optional[Callable[[], None]] = None
             ) -> Dict[str, np.ndarray]:
    """The ERF of each layer: |d(centre of its output, summed over channels)
    / d(input)| summed over input channels, averaged over ``inputs``; one
    (H, W) float64 map per layer name.

    Eval mode, as Luo et al. and RepLKNet. ``on_image`` is called after each
    image (a progress bar).
    """
    backbone.eval()
    sums: Dict[str, np.ndarray] = {}
    count = 0
    with frozen_parameters(backbone):
        for x in inputs:
            x = x.detach().clone().requires_grad_(True)
            outputs = run_until_captured(backbone, x, layers)
            for i, layer in enumerate(layers):
                out = outputs[layer.name]
                h, w = out.shape[-2:]
                centre = out[:, :, h // 2, w // 2].sum()
                grad, = torch.autograd.grad(
                    centre, x, retain_graph=i < len(layers) - 1)
                contrib = grad.abs().sum(dim=(0, 1)).double().cpu().numpy()
                sums[layer.name] = sums.get(layer.name, 0) + contrib
            del outputs
            count += 1
            if on_image is not None:
                on_image()
    if not count:
        raise ValueError('No image to compute the ERF on.')
    return {name: total / count for name, total in sums.items()}


def log_scaled(erf: np.ndarray) -> np.ndarray:
    """log10(1 + ERF) rescaled to a maximum of 1, as RepLKNet (magnitudes
    differ by orders between layers)."""
    data = np.log10(np.asarray(erf, dtype=np.float64) + 1)
    peak = data.max()
    return data / peak if peak > 0 else data


def erf_score(erf: np.ndarray, thresholds: Sequence[float] = ERF_THRESHOLDS,
              log: bool = True) -> List[float]:
    """Per threshold t, the area ratio of the smallest centred square
    (clipped to the map) holding more than t of the contribution
    (RepLKNet's ``analyze_erf.py``)."""
    data = log_scaled(erf) if log else np.asarray(erf, dtype=np.float64)
    h, w = data.shape
    total = data.sum()
    cy, cx = h // 2, w // 2
    ratios = []
    for t in thresholds:
        ratio = 1.0
        if total > 0:
            for r in range(max(h, w)):
                y0, y1 = max(cy - r, 0), min(cy + r + 1, h)
                x0, x1 = max(cx - r, 0), min(cx + r + 1, w)
                if (y1 - y0) * (x1 - x0) == h * w:
                    break
                if data[y0:y1, x0:x1].sum() > t * total:
                    ratio = (y1 - y0) * (x1 - x0) / (h * w)
                    break
        ratios.append(ratio)
    return ratios


def erf_table(maps: Dict[str, np.ndarray], layers: Sequence[Layer],
              thresholds: Sequence[float] = ERF_THRESHOLDS) -> str:
    """The ERF score of every layer as a text table."""
    head = ['layer', 'module'] + [f'{t:.0%}' for t in thresholds]
    rows = [[layer.name, layer.path] +
            [f'{r:.4f}' for r in erf_score(maps[layer.name], thresholds)]
            for layer in layers]
    widths = [max(len(str(row[i])) for row in [head] + rows)
              for i in range(len(head))]
    lines = ['  '.join(c.ljust(w) for c, w in zip(row, widths)).rstrip()
             for row in [head] + rows]
    return '\n'.join(lines)


def grad_cam(model: nn.Module, layers: Sequence[Layer], x: Tensor,
             target_class: Optional[int] = None
             ) -> Tuple[Dict[str, np.ndarray], int, float]:
    """Grad-CAM of a classifier for one image ``x`` (1, 3, H, W).

    Returns [0, 1] maps at (H, W) by layer name, the class (default: top-1)
    and its softmax probability.
    """
    model.eval()
    with frozen_parameters(model):
        x = x.detach().clone().requires_grad_(True)
        with capture(layers) as outputs:
            logits = model(x, mode='tensor')
        if isinstance(logits, (tuple, list)):
            logits = logits[-1]
        if logits.dim() != 2:
            raise ValueError(f'The model returns shape {tuple(logits.shape)}'
                             f', not (1, num_classes) class scores.')
        num_classes = logits.shape[1]
        k = int(logits[0].argmax()) if target_class is None else target_class
        if not 0 <= k < num_classes:
            raise ValueError(f'--target-class {k} is not a class of this '
                             f'model (0..{num_classes - 1}).')
        acts = [outputs[layer.name] for layer in layers]
        grads = torch.autograd.grad(logits[0, k], acts, allow_unused=True)
    prob = float(logits[0].detach().softmax(0)[k])
    cams = {}
    for layer, act, grad in zip(layers, acts, grads):
        act = act.detach()
        if grad is None:  # the class score does not depend on this layer
            grad = torch.zeros_like(act)
        weights = grad.mean(dim=(2, 3), keepdim=True)
        cam = F.relu((weights * act).sum(dim=1, keepdim=True))
        cam = F.interpolate(cam, size=x.shape[-2:], mode='bilinear',
                            align_corners=False)[0, 0].double()
        cam = cam - cam.min()
        peak = cam.max()
        cams[layer.name] = (cam / peak if peak > 0 else cam).cpu().numpy()
    return cams, k, prob


def overlay(image: np.ndarray, cam: np.ndarray,
            alpha: float = 0.5) -> np.ndarray:
    """``cam`` ([0, 1], H x W) in the jet colormap blended over ``image``."""
    from matplotlib import colormaps

    heat = colormaps['jet'](np.clip(cam, 0, 1))[..., :3]
    out = (1 - alpha) * image.astype(np.float64) / 255 + alpha * heat
    return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)
