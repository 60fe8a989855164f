"""In-place shortcuts at inference: elementwise layers and residual sums
written into the fresh map they read.

A fresh map at detection sizes costs page faults on first touch, so reusing
one lowers time and peak memory (docs/benchmarks.md). GELU and sums give the
same bits, BatchNorm agrees to float32 rounding.
"""
from typing import Sequence

import torch
from torch import Tensor, nn

from .rules import applies, plain_batch_norm, plain_gelu


def inplace_(layer: nn.Module, x: Tensor) -> Tensor:
    """``layer(x)``, written into ``x`` (a fresh map nothing else reads)
    for an exact GELU or eval-mode BatchNorm where ``'inplace'`` applies."""
    if not applies('inplace', x, bypassed=(layer, )):
        return layer(x)
    if plain_gelu(layer):
        return torch.ops.aten.gelu_(x)
    if plain_batch_norm(layer) and not layer.training:
        # PyTorch's eval formula: x * alpha + beta.
        alpha = 1 / torch.sqrt(layer.running_var + layer.eps) * layer.weight
        beta = layer.bias - layer.running_mean * alpha
        return x.mul_(alpha.view(-1, 1, 1)).add_(beta.view(-1, 1, 1))
    return layer(x)


def add_residual(branch: Tensor, x: Tensor) -> Tensor:
    """``x + branch``; at inference written into the fresh ``branch`` when
    that keeps the sum's dtype."""
    if (applies('inplace', branch) and branch.shape == x.shape
            and branch.dtype == x.dtype):
        return branch.add_(x)
    return x + branch


def split_convs(x: Tensor, splits: Sequence[int], convs: Sequence[nn.Module],
                residual: bool, owner: nn.Module) -> Tensor:
    """``cat([conv(part) for each channel group of x]) (+ x if residual)``.

    At inference with ``residual`` each sum is written over its slice of
    ``x`` (two fewer hidden-size maps at the peak), so ``owner`` (the caller)
    must receive a fresh map; with a hook on it, nothing is overwritten."""
    parts = x.split(list(splits), dim=1)
    if residual and applies('inplace', x, bypassed=(owner, )):
        for conv, part in zip(convs, parts):
            part += conv(part)
        return x
    out = torch.cat([conv(p) for conv, p in zip(convs, parts)], dim=1)
    return out + x if residual else out
