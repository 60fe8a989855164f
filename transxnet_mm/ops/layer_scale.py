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

from .rules import applies, hooked, training_batch_norm
from .utils import bn_momentum


def foldable(scale: nn.Module, bn: nn.Module, x: Tensor) -> bool:
    """Whether ``scale(bn(x) ...)`` may run folded (a training BatchNorm
    where ``'layer_scale'`` applies)."""
    return (training_batch_norm(bn)
            and applies('layer_scale', x, x, bn.weight, scale.weight,
                        bypassed=(scale, bn)))


def scaled_batch_norm(scale: nn.Module, bn: nn.BatchNorm2d, x: Tensor,
                      residual: Optional[Tensor] = None) -> Tensor:
    """``scale(bn(x) + residual)`` (``residual`` optional), folded;
    ``scale`` has a ``weight`` of C elements and a ``bias`` (C, )."""
    w = scale.weight.reshape(-1)
    weight, bias = w * bn.weight, torch.addcmul(scale.bias, w, bn.bias)
    out = F.batch_norm(x, bn.running_mean, bn.running_var, weight, bias,
                       True, bn_momentum(bn), bn.eps)
    if residual is None:
        return out
    return torch.addcmul(out, residual, w.view(1, -1, 1, 1))


def scaled_branch(branch: nn.Module, scale: nn.Module, *args) -> Tensor:
    """``scale(branch(*args))``, passed as ``layer_scale=`` to fold it
    unless a hook watches the branch (it then sees the authors' output)."""
    if hooked(branch):
        return scale(branch(*args))
    return branch(*args, layer_scale=scale)
