"""Depthwise convolution for CPU training.

oneDNN's CPU depthwise backward is many times slower than its forward for
5x5 and 7x7 kernels, nearly all of it in the weight gradient. That gradient,
``sum over b, y, x of grad[b, c, y, x] * x_pad[b, c, y + i, x + j]``, is
itself a depthwise convolution: of the padded input, with the output
gradient as the kernel and the batch folded into the channels, which runs
faster on large maps. On small maps (14x14, 7x7) that large-kernel
convolution is slower, so they keep oneDNN, in the channels-last layout,
where its backward beats NCHW by more than the layout copies cost. For 3x3
and strided kernels PyTorch's own NCHW convolution is the fastest (see
:func:`depthwise_conv2d`). Timings: docs/benchmarks.md.
"""
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.utils import _pair

from .rules import applies, export_form, refuse
from .utils import needs_grad, plain_backward

# Maps of fewer pixels keep oneDNN's backward (see the module docstring).
MIN_PIXELS = 28 * 28


def _weight_grad(x: Tensor, grad: Tensor, kernel: Tuple[int, int],
                 padding: Tuple[int, int]) -> Tensor:
    """Weight gradient of a stride-1 depthwise conv as a depthwise conv of
    the padded input with the output gradient as kernel.

    Samples and blocks of ``rows`` output rows are folded into the channels
    and the partial kernels summed, so that each float32 sum spans ~2K
    products, not the whole map: summed at once its rounding error was ~3x
    PyTorch's (3e-6 vs 8e-7 relative at 2x48x128x128, 7x7), in blocks it is
    ~1e-6. This matters beyond the weight: IDConv's kernels are computed
    from the input, so their gradient flows on into the network.
    """
    (B, C, _, _), (Ho, Wo), (K1, K2) = x.shape, grad.shape[2:], kernel
    p1, p2 = padding
    rows = max(1, 2048 // Wo)
    n = -(-Ho // rows)
    extra = n * rows - Ho
    grad = F.pad(grad, (0, 0, 0, extra))
    xp = F.pad(x, (p2, p2, p1, p1 + extra))
    win = rows + K1 - 1
    xp = xp.unfold(2, win, rows).permute(1, 0, 2, 4, 3)
    out = F.conv2d(
        xp.reshape(1, C * B * n, win, xp.shape[-1]),
        grad.reshape(B, C, n, rows, Wo).transpose(0, 1).reshape(
            C * B * n, 1, rows, Wo),
        groups=C * B * n)
    return out[0, :, :, :K2].reshape(C, B * n, K1, K2).sum(1, keepdim=True)


def _conv(x: Tensor, weight: Tensor, bias: Optional[Tensor],
          padding: Tuple[int, int]) -> Tensor:
    return F.conv2d(x, weight, bias, 1, padding, 1, x.shape[1])


def training_method(x: Tensor, weight: Tensor,
                    stride: Union[int, Tuple[int, int]] = 1) -> str:
    """Which backward a depthwise conv of ``weight`` on ``x`` takes in
    training: ``'cpu'`` (:class:`DepthwiseConv2dCPU`), ``'channels_last'``
    (:class:`DepthwiseConv2dChannelsLast`) or ``'plain'`` (PyTorch's NCHW
    convolution). The first two only where the ``'depthwise'`` kernel
    applies, for 5x5 and larger kernels of stride 1."""
    if min(weight.shape[2:]) < 5 or _pair(stride) != (1, 1):
        if needs_grad(x, weight):
            refuse('depthwise', '3x3 or strided: PyTorch\'s conv is faster')
        return 'plain'
    if not applies('depthwise', x, x, weight):
        return 'plain'
    return 'cpu' if x.shape[2] * x.shape[3] >= MIN_PIXELS else 'channels_last'


def depthwise_backward(
        method: str, x: Tensor, weight: Tensor, grad: Tensor,
        stride: Tuple[int, int], padding: Tuple[int, int],
        needs: Sequence[bool]) -> Tuple[Optional[Tensor], ...]:
    """Gradients of input, weight and bias of a depthwise conv by
    ``method`` (:func:`training_method`), those with ``needs`` set (the
    others None)."""
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
    """Stride-1 depthwise convolution whose weight gradient is one more
    convolution (:func:`_weight_grad`); the input gradient is PyTorch's."""

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
    """oneDNN's depthwise convolution in the channels-last layout, where its
    backward is faster than in NCHW, saving the NCHW input rather
    than its channels-last copy (which autograd would keep: one more map
    per convolution): the copy is made again in backward."""

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
    """Stride-1 depthwise convolution of (1, G, H, W) with G symbolic (the
    export form of IDConv's batch-folded conv: ONNX's ``Conv`` needs a
    constant ``group``): each channel's KxK patches by one convolution with
    constant one-hot kernels (channels as samples), times its weights,
    summed over the taps. The same products, summed in another order."""
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
    """Depthwise convolution (one filter per channel), NCHW in and out.

    Where the ``'depthwise'`` kernel applies (CPU training), 5x5 and larger
    kernels of stride 1 take :class:`DepthwiseConv2dCPU` on maps of at least
    :data:`MIN_PIXELS`, else :class:`DepthwiseConv2dChannelsLast`. 3x3 and
    strided kernels, and everything without gradients, take PyTorch's
    NCHW convolution as it is: at the backbone's shapes each choice is the
    fastest of the three for its case (docs/benchmarks.md). Exported with
    a symbolic channel count, :func:`depthwise_by_taps`.
    """
    if export_form(x.shape[1]) and _pair(stride) == (1, 1):
        return depthwise_by_taps(x, weight, bias, _pair(padding))
    method = training_method(x, weight, stride)
    if method == 'cpu':
        return DepthwiseConv2dCPU.apply(x, weight, bias, _pair(padding))
    if method == 'channels_last':
        return DepthwiseConv2dChannelsLast.apply(x, weight, bias, (1, 1),
                                                 _pair(padding))
    groups = x.shape[1]
    return F.conv2d(x, weight, bias, stride, padding, 1, groups)


class DWConv2d(nn.Conv2d):
    """Depthwise ``nn.Conv2d`` (same padding), through
    :func:`depthwise_conv2d`."""

    def __init__(self, channels: int, kernel_size: int, stride: int = 1,
                 bias: bool = True) -> None:
        super().__init__(channels, channels, kernel_size, stride,
                         padding=kernel_size // 2, groups=channels, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return depthwise_conv2d(x, self.weight, self.bias, self.stride,
                                self.padding)
