"""A layer scale folded into the training-mode BatchNorm before it.

A TransXNet block ends both residual branches with a BatchNorm and a layer
scale (a per-channel scale ``w`` and bias ``b``): ``b + w * (bn(u) (+ r))``.
Plain autograd keeps the BatchNorm's input u for its backward and its
output (plus r) for the layer scale's weight gradient. The scale is affine,
so ``b + w * bn(u)`` is one BatchNorm of u with weight ``w * bn.weight`` and
bias ``w * bn.bias + b`` (same batch statistics, same running update), and
``w * r`` an ``addcmul`` that keeps r, which the branch saved already: one
map fewer per branch and block, the gradients of all four parameters by
autograd through the two products.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .rules import applies, hooked, training_batch_norm
from .utils import bn_momentum


def foldable(scale: nn.Module, bn: nn.Module, x: Tensor) -> bool:
    """Whether ``scale(bn(x) ...)`` may run folded: a training BatchNorm
    (:mod:`.rules`) where the ``'layer_scale'`` kernel applies."""
    return (training_batch_norm(bn)
            and applies('layer_scale', x, x, bn.weight, scale.weight,
                        bypassed=(scale, bn)))


def scaled_batch_norm(scale: nn.Module, bn: nn.BatchNorm2d, x: Tensor,
                      residual: Optional[Tensor] = None) -> Tensor:
    """``scale(bn(x) + residual)`` (``residual`` optional) with the scale
    folded into the BatchNorm (see the module docstring); ``scale`` has a
    ``weight`` of C elements and a ``bias`` (C, )."""
    w = scale.weight.reshape(-1)
    weight, bias = w * bn.weight, torch.addcmul(scale.bias, w, bn.bias)
    out = F.batch_norm(x, bn.running_mean, bn.running_var, weight, bias,
                       True, bn_momentum(bn), bn.eps)
    if residual is None:
        return out
    return torch.addcmul(out, residual, w.view(1, -1, 1, 1))


def scaled_branch(branch: nn.Module, scale: nn.Module, *args) -> Tensor:
    """``scale(branch(*args))`` for a residual branch whose forward takes
    ``layer_scale=`` (D-Mixer, MS-FFN) to fold it into its last BatchNorm;
    a branch a hook watches is called as it is, so the hook sees the
    authors' output."""
    if hooked(branch):
        return scale(branch(*args))
    return branch(*args, layer_scale=scale)
