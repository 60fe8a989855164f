"""Depthwise convolution for CPU training.

oneDNN's weight gradient of 5x5 and 7x7 depthwise convs is slow. It is
itself a depthwise conv of the padded input with the output gradient as
kernel (batch folded into channels), faster on large maps; small maps keep
oneDNN in channels-last, whose backward beats NCHW (docs/benchmarks.md).
"""
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.utils import _pair

from .rules import depthwise_method, export_form
from .utils import plain_backward


def _weight_grad(x: Tensor, grad: Tensor, kernel: Tuple[int, int],
                 padding: Tuple[int, int]) -> Tensor:
    """Weight gradient of a stride-1 depthwise conv as a depthwise conv of
    the padded input with the output gradient as kernel.

    Samples and row blocks are folded into the channels, so each float32 sum
    spans ~2K products, not the whole map: rounding near PyTorch's (IDConv's
    kernel gradient flows on into the network)."""
    (B, C, _, _), (Ho, Wo), (K1, K2) = x.shape, grad.shape[2:], kernel
    p1, p2 = padding
    rows = max(1, 2048 // Wo)
    n = -(-Ho // rows)
    extra = n * rows - Ho
    grad = F.pad(grad, (0, 0, 0, extra))
    xp = F.pad(x, (p2, p2, p1, p1 + extra))
    win = rows + K1 - 1
    xp = xp.unfold(2, win, rows).permute(1, 0, 2, 4, 3)
    out = F.conv2d(xp.reshape(1, C * B * n, win, xp.shape[-1]),
                   grad.reshape(B, C, n, rows, Wo).transpose(0, 1).reshape(
                       C * B * n, 1, rows, Wo), groups=C * B * n)
    return out[0, :, :, :K2].reshape(C, B * n, K1, K2).sum(1, keepdim=True)


def _conv(x: Tensor, weight: Tensor, bias: Optional[Tensor],
          padding: Tuple[int, int]) -> Tensor:
    return F.conv2d(x, weight, bias, 1, padding, 1, x.shape[1])


def depthwise_backward(method: str, x: Tensor, weight: Tensor, grad: Tensor,
                       stride: Tuple[int, int], padding: Tuple[int, int],
                       needs: Sequence[bool]) -> Tuple[Optional[Tensor], ...]:
    """Gradients of input, weight and bias by ``method``
    (:func:`depthwise_method`); None where ``needs`` is unset."""
    needs = tuple(needs) + (False, ) * (3 - len(needs))
    groups = x.shape[1]
    if method == 'cpu':
        grad = grad.contiguous()
        grad_x = grad_w = grad_b = None
        if needs[0]:
            grad_x = torch.ops.aten.convolution_backward(
                grad, x, weight, None, (1, 1), padding, (1, 1), False,
                (0, 0), groups, (True, False, False))[0]
        if needs[1]:
            grad_w = _weight_grad(x, grad, weight.shape[2:], padding)
        if needs[2]:
            grad_b = grad.sum((0, 2, 3))
        return grad_x, grad_w, grad_b
    if method == 'channels_last':
        cl = torch.channels_last
        grad, x = grad.contiguous(memory_format=cl), x.contiguous(
            memory_format=cl)
    grad_x, grad_w, grad_b = torch.ops.aten.convolution_backward(
        grad, x, weight, [weight.shape[0]] if needs[2] else None, stride,
        padding, (1, 1), False, (0, 0), groups, needs[:3])
    if grad_x is not None:
        grad_x = grad_x.contiguous()
    return grad_x, grad_w, grad_b


class DepthwiseConv2dCPU(torch.autograd.Function):
    """Stride-1 depthwise conv, weight gradient by :func:`_weight_grad`."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Optional[Tensor],
                padding: Tuple[int, int]) -> Tensor:
        ctx.save_for_backward(x, weight, bias)
        ctx.padding = padding
        return _conv(x, weight, bias, padding)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple:
        x, weight, bias = ctx.saved_tensors
        if torch.is_grad_enabled():  # double backward: differentiable ops
            return plain_backward(_conv, ctx, (x, weight, bias), grad,
                                  ctx.padding)
        grad_x, grad_w, grad_b = depthwise_backward(
            'cpu', x, weight, grad, (1, 1), ctx.padding, ctx.needs_input_grad)
        return grad_x, grad_w, grad_b, None


def _conv_cl(x: Tensor, weight: Tensor, bias: Optional[Tensor],
             stride: Tuple[int, int], padding: Tuple[int, int]) -> Tensor:
    return F.conv2d(x.contiguous(memory_format=torch.channels_last), weight,
                    bias, stride, padding, 1, x.shape[1]).contiguous()


class DepthwiseConv2dChannelsLast(torch.autograd.Function):
    """oneDNN's depthwise conv in channels-last (faster backward), saving
    the NCHW input, not its channels-last copy (one map fewer per conv),
    which backward makes again."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Optional[Tensor],
                stride: Tuple[int, int], padding: Tuple[int, int]) -> Tensor:
        ctx.save_for_backward(x, weight, bias)
        ctx.stride, ctx.padding = stride, padding
        return _conv_cl(x, weight, bias, stride, padding)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple:
        x, weight, bias = ctx.saved_tensors
        if torch.is_grad_enabled():  # double backward: differentiable ops
            return plain_backward(_conv_cl, ctx, (x, weight, bias), grad,
                                  ctx.stride, ctx.padding)
        grad_x, grad_w, grad_b = depthwise_backward(
            'channels_last', x, weight, grad, ctx.stride, ctx.padding,
            ctx.needs_input_grad[:2] + (
                bias is not None and ctx.needs_input_grad[2], ))
        return grad_x, grad_w, grad_b, None, None


def depthwise_by_taps(x: Tensor, weight: Tensor, bias: Optional[Tensor],
                      padding: Tuple[int, int]) -> Tensor:
    """Stride-1 depthwise conv of (1, G, H, W), G symbolic: the export form
    of IDConv's batch-folded conv, as ONNX's ``Conv`` needs a constant
    ``group``. Patches by one-hot kernels, times the weights, summed."""
    K1, K2 = weight.shape[2:]
    taps = torch.eye(K1 * K2, dtype=x.dtype, device=x.device)
    patches = F.conv2d(x.reshape(-1, 1, *x.shape[2:]),
                       taps.reshape(K1 * K2, 1, K1, K2), None, 1, padding)
    out = (patches * weight.reshape(-1, K1 * K2, 1, 1)).sum(1)
    if bias is not None:
        out = out + bias.reshape(-1, 1, 1)
    return out.unsqueeze(0)


def depthwise_conv2d(x: Tensor, weight: Tensor, bias: Optional[Tensor],
                     stride: Union[int, Tuple[int, int]] = 1,
                     padding: Union[int, Tuple[int, int]] = 0) -> Tensor:
    """Depthwise convolution, NCHW, by the fastest path for its case
    (:func:`depthwise_method`; exported: :func:`depthwise_by_taps`)."""
    if export_form(x.shape[1]) and _pair(stride) == (1, 1):
        return depthwise_by_taps(x, weight, bias, _pair(padding))
    method = depthwise_method(x, weight, stride)
    if method == 'cpu':
        return DepthwiseConv2dCPU.apply(x, weight, bias, _pair(padding))
    if method == 'channels_last':
        return DepthwiseConv2dChannelsLast.apply(x, weight, bias, (1, 1),
                                                 _pair(padding))
    groups = x.shape[1]
    return F.conv2d(x, weight, bias, stride, padding, 1, groups)


class DWConv2d(nn.Conv2d):
    """Depthwise ``nn.Conv2d`` (same padding) by :func:`depthwise_conv2d`."""

    def __init__(self, channels: int, kernel_size: int, stride: int = 1,
                 bias: bool = True) -> None:
        super().__init__(channels, channels, kernel_size, stride,
                         padding=kernel_size // 2, groups=channels, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return depthwise_conv2d(x, self.weight, self.bias, self.stride,
                                self.padding)
