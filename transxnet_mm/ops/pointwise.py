"""1x1 convolution as matrix products per sample (CPU).

Replaces ``F.conv2d`` with a 1x1 kernel. For NCHW maps oneDNN reorders the
input to its blocked layout and the output back around every 1x1
convolution; ``weight (Co, Ci) @ x[b] (Ci, H*W)`` reads the map as it is
(timings: docs/benchmarks.md).
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .rules import applies
from .utils import needs_grad, plain_backward


def per_sample_mm(w: Tensor, x3: Tensor,
                  bias: Optional[Tensor] = None) -> Tensor:
    """``w (Co, Ci) @ x3[b] (Ci, N)`` (+ bias) for each sample b, into one
    (B, Co, N) map. ``torch.matmul(w, x3)`` would compute the transposed
    product and copy it back."""
    out = x3.new_empty(x3.shape[0], w.shape[0], x3.shape[2])
    for i in range(x3.shape[0]):
        if bias is None:
            torch.mm(w, x3[i], out=out[i])
        else:
            torch.addmm(bias.view(-1, 1), w, x3[i], out=out[i])
    return out


def _forward(x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
    """``weight (Co, Ci) @ x[b] (Ci, H*W)`` (+ bias) for each sample b."""
    (B, C), Co = x.shape[:2], weight.shape[0]
    out = per_sample_mm(weight.reshape(Co, C), x.reshape(B, C, -1), bias)
    return out.view(B, Co, *x.shape[2:])


class PointwiseConv2dCPU(torch.autograd.Function):
    """The forward above; the backward is two products per sample and, for
    the bias, a sum (closer to float64 than oneDNN's: 1e-7 vs 4e-6)."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor,
                bias: Optional[Tensor]) -> Tensor:
        ctx.save_for_backward(x, weight, bias)
        return _forward(x, weight, bias)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple:
        x, weight, bias = ctx.saved_tensors
        if torch.is_grad_enabled():  # double backward: differentiable ops
            return plain_backward(F.conv2d, ctx, (x, weight, bias), grad)
        (B, C), Co = x.shape[:2], weight.shape[0]
        x3, w = x.reshape(B, C, -1), weight.reshape(Co, C)
        grad = grad.reshape(B, Co, -1)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = per_sample_mm(w.T, grad).view_as(x)
        if ctx.needs_input_grad[1]:
            grad_w = grad[0] @ x3[0].T
            for i in range(1, B):
                grad_w.addmm_(grad[i], x3[i].T)
            grad_w = grad_w.view_as(weight)
        if bias is not None and ctx.needs_input_grad[2]:
            grad_b = grad.sum((0, 2))
        return grad_x, grad_w, grad_b


def pointwise_conv2d(x: Tensor, weight: Tensor,
                     bias: Optional[Tensor]) -> Tensor:
    """1x1 convolution: :class:`PointwiseConv2dCPU` (or its forward without
    gradients) where the ``'pointwise'`` kernel applies, else ``F.conv2d``."""
    if not applies('pointwise', x):
        return F.conv2d(x, weight, bias)
    if needs_grad(x, weight, bias):
        return PointwiseConv2dCPU.apply(x, weight, bias)
    return _forward(x, weight, bias)


class Conv1x1(nn.Conv2d):
    """``nn.Conv2d`` with a 1x1 kernel, through :func:`pointwise_conv2d`."""

    def __init__(self, in_channels: int, out_channels: int,
                 bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return pointwise_conv2d(x, self.weight, self.bias)


def plain_conv1x1(module: nn.Module) -> bool:
    """A 1x1, stride 1, unpadded, ungrouped 2d convolution whose forward is
    ``F.conv2d``'s: an exact ``nn.Conv2d`` or :class:`Conv1x1` (the type
    test of :mod:`.rules`)."""
    return (type(module) in (nn.Conv2d, Conv1x1)
            and module.kernel_size == (1, 1) and module.groups == 1
            and module.stride == (1, 1) and module.padding == (0, 0)
            and module.dilation == (1, 1) and module.padding_mode == 'zeros')
