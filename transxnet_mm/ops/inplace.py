"""In-place shortcuts at inference: GELU, BatchNorm and residual sums
written into the fresh map they read.

A fresh map at detection sizes costs page faults on first touch, so reusing
one lowers time and peak memory (docs/benchmarks.md). GELU and sums give the
same bits, BatchNorm agrees to float32 rounding.
"""
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .rules import applies, in_place_batch_norm


def gelu_(x: Tensor) -> Tensor:
    """``gelu(x)``, written into ``x`` (a fresh map nothing else reads)
    where ``'inplace'`` applies."""
    if applies('inplace', x):
        return torch.ops.aten.gelu_(x)
    return F.gelu(x)


def batch_norm_(bn: nn.Module, x: Tensor) -> Tensor:
    """``bn(x)``, written into ``x`` (a fresh map nothing else reads) for an
    eval-mode BatchNorm where ``'inplace'`` applies."""
    if not in_place_batch_norm(bn, x):
        return bn(x)
    # PyTorch's eval formula: x * alpha + beta.
    alpha = 1 / torch.sqrt(bn.running_var + bn.eps) * bn.weight
    beta = bn.bias - bn.running_mean * alpha
    return x.mul_(alpha.view(-1, 1, 1)).add_(beta.view(-1, 1, 1))


def add_residual(branch: Tensor, x: Tensor) -> Tensor:
    """``x + branch``; at inference written into the fresh ``branch`` when
    that keeps the sum's dtype."""
    if (applies('inplace', branch) and branch.shape == x.shape
            and branch.dtype == x.dtype):
        return branch.add_(x)
    return x + branch
