"""In-place shortcuts at inference: elementwise layers and residual sums
written into the fresh intermediate map they read.

A fresh map at detection sizes costs its page faults on first touch, so
reusing the one just read lowers both time and peak memory
(docs/benchmarks.md). GELU gives the same bits,
BatchNorm agrees to float32 rounding (4.8e-7 on values of order 1), sums are
the same additions. Only where the ``'inplace'`` kernel applies
(:mod:`.rules`: no gradients recorded, no hook on the module bypassed).
"""
from typing import Sequence

import torch
from torch import Tensor, nn

from .rules import applies, plain_batch_norm, plain_gelu


def inplace_(layer: nn.Module, x: Tensor) -> Tensor:
    """``layer(x)``, written into ``x`` where the ``'inplace'`` kernel
    applies if ``layer`` is an exact GELU or an eval-mode plain BatchNorm
    (:mod:`.rules`). ``x`` must be a fresh map that nothing else reads."""
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
    """``x + branch``; at inference written into ``branch``, a fresh map the
    branch just made, when that keeps the sum's dtype."""
    if (applies('inplace', branch) and branch.shape == x.shape
            and branch.dtype == x.dtype):
        return branch.add_(x)
    return x + branch


def split_convs(x: Tensor, splits: Sequence[int], convs: Sequence[nn.Module],
                residual: bool, owner: nn.Module) -> Tensor:
    """``cat([conv(part) for each channel group of x]) (+ x if residual)``.

    At inference with ``residual`` each group's sum is written over its
    slice of ``x`` once that group's conv has read it (the same additions):
    two fewer hidden-size maps at the peak. ``x`` is then overwritten, so
    ``owner`` (the calling module) must receive a fresh map; with a hook on
    it, nothing is overwritten."""
    parts = x.split(list(splits), dim=1)
    if residual and applies('inplace', x, bypassed=(owner, )):
        for conv, part in zip(convs, parts):
            part += conv(part)
        return x
    out = torch.cat([conv(p) for conv, p in zip(convs, parts)], dim=1)
    return out + x if residual else out
