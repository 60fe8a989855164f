"""A layer scale folded into the training-mode BatchNorm before it.

``b + w * (bn(u) + r)``: plain autograd keeps u and the BatchNorm's output.
Folded, ``b + w * bn(u)`` is one BatchNorm of u with weight ``w * bn.weight``
and bias ``w * bn.bias + b`` (same statistics), and ``w * r`` an ``addcmul``
keeping r, saved already: one map fewer per branch and block.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .inplace import add_residual, batch_norm_
from .rules import folds_layer_scale
from .utils import bn_momentum


def _folded(x: Tensor, bn: nn.Module, weight: Tensor, bias: Tensor,
            residual: Optional[Tensor]) -> Tensor:
    w = weight.reshape(-1)
    out = F.batch_norm(x, bn.running_mean, bn.running_var, w * bn.weight,
                       torch.addcmul(bias, w, bn.bias), True,
                       bn_momentum(bn), bn.eps)
    if residual is None:
        return out
    return torch.addcmul(out, residual, w.view(1, -1, 1, 1))


def scaled_batch_norm(x: Tensor, bn: nn.Module, weight: Tensor, bias: Tensor,
                      residual: Optional[Tensor] = None) -> Tensor:
    """``bias + weight * (bn(x) + residual)`` (``residual`` optional; the
    layer scale's C-element ``weight`` and (C, ) ``bias``), folded into a
    training BatchNorm of the local batch where ``'layer_scale'`` applies;
    at inference the BatchNorm and the sum in place."""
    if folds_layer_scale(bn, x, weight):
        return _folded(x, bn, weight, bias, residual)
    out = batch_norm_(bn, x)
    if residual is not None:
        out = add_residual(out, residual)
    return torch.addcmul(bias.view(1, -1, 1, 1), out, weight.view(1, -1, 1, 1))
