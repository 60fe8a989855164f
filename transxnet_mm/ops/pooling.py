"""A Sequential that runs through the ops (same parameters and state-dict
keys as ``nn.Sequential``), and IDConv's pooling."""
from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .gelu_bn import fused_step
from .inplace import add_residual, inplace_
from .layer_scale import foldable, scaled_batch_norm
from .rules import export_form, hooked, plain_conv1x1


def run_layers(layers: List[nn.Module], x: Tensor, start: int = 0) -> Tensor:
    """The layers in turn, from ``start``: at inference those after the
    first in place; in training GELU -> BatchNorm (-> 1x1 conv) fused
    (:func:`fused_step`)."""
    i = start
    while i < len(layers):
        out, used = fused_step(layers, i, x)
        if used:
            x, i = out, i + used
            continue
        x = inplace_(layers[i], x) if i else layers[i](x)
        i += 1
    return x


def run_scaled(layers: List[nn.Module], x: Tensor, scale: nn.Module,
               residual: Optional[Tensor] = None, start: int = 0) -> Tensor:
    """``scale(run_layers(layers, x, start) + residual)``, the scale folded
    into a last BatchNorm where :func:`~.layer_scale.foldable`."""
    if foldable(scale, layers[-1], x):
        return scaled_batch_norm(scale, layers[-1],
                                 run_layers(layers[:-1], x, start), residual)
    x = run_layers(layers, x, start)
    return scale(x if residual is None else add_residual(x, residual))


class LeanSequential(nn.Sequential):
    """``nn.Sequential`` that keeps less memory (:func:`run_layers`)."""

    def forward(self, x: Tensor) -> Tensor:
        return run_layers(list(self), x)

    def scaled(self, x: Tensor, scale: nn.Module,
               residual: Optional[Tensor] = None) -> Tensor:
        """``scale(self(x) + residual)`` (``residual`` optional)."""
        if hooked(self):
            x = self(x) if residual is None else add_residual(self(x),
                                                              residual)
            return scale(x)
        return run_scaled(list(self), x, scale, residual)


def gelu_bn_seq(act: nn.Module, bn: nn.Module, seq: nn.Sequential,
                x: Tensor, scale: Optional[nn.Module] = None) -> Tensor:
    """``seq(bn(act(x)))``, then ``scale`` if given, the first conv of
    ``seq`` fused (:class:`~.gelu_bn.GeluBatchNormConv1x1`) where it can."""
    if not hooked(seq) and plain_conv1x1(seq[0]):
        out, used = fused_step([act, bn, seq[0]], 0, x)
        if used == 3:
            layers = list(seq)
            return run_layers(layers, out, 1) if scale is None else \
                run_scaled(layers, out, scale, start=1)
    out = seq(inplace_(bn, inplace_(act, x)))
    return out if scale is None else scale(out)


def pool_matrix(n, out: int, like: Tensor) -> Tensor:
    """(out, n) matrix of PyTorch's adaptive average pooling of one axis."""
    i = torch.arange(out, device=like.device)
    start = (i * n) // out
    end = ((i + 1) * n + out - 1) // out
    pos = torch.arange(n, device=like.device)
    mask = (pos >= start[:, None]) & (pos < end[:, None])
    return mask.to(like.dtype) / (end - start).to(like.dtype)[:, None]


def adaptive_avg_pool2d(x: Tensor, size: int) -> Tensor:
    """``F.adaptive_avg_pool2d(x, size)``; exported with symbolic sizes, by
    :func:`pool_matrix` (the exporter would bake in the example's windows)."""
    if export_form(*x.shape[-2:]):
        H, W = x.shape[-2:]
        return pool_matrix(H, size, x) @ x @ pool_matrix(W, size, x).T
    return F.adaptive_avg_pool2d(x, size)
