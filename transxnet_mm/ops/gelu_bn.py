"""GELU then training-mode BatchNorm, and what reads it (a 1x1 conv, or
MS-FFN's depthwise convs and residual), saving only the GELU's input.

Plain autograd keeps x, gelu(x) and bn(gelu(x)) for ``conv(bn(gelu(x)))``;
these Functions keep x and the batch statistics and recompute the other two
(cheap elementwise work) in backward: in MS-FFN's hidden width most of a
step's activation memory. Forward results are PyTorch's ops (same bits).
"""
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from .depthwise import DWConv2d, depthwise_backward, training_method
from .inplace import inplace_
from .rules import (applies, hooked, plain_conv1x1, plain_gelu, refuse,
                    training_batch_norm)
from .utils import bn_momentum, plain_backward


def fusable(act: nn.Module, bn: nn.Module, x: Tensor,
            *others: nn.Module) -> bool:
    """Whether ``bn(act(x))`` (then ``others``) may run fused: an exact GELU
    and a training BatchNorm where ``'gelu_bn'`` applies."""
    if not (isinstance(act, nn.GELU) and isinstance(bn, _BatchNorm)
            and bn.training):
        return False  # not this pattern, or inference (in place there)
    if not (plain_gelu(act) and training_batch_norm(bn)):
        return refuse('gelu_bn', 'not an exact GELU and a BatchNorm of the '
                      'local batch')
    return applies('gelu_bn', x, x, bn.weight, bypassed=(act, bn) + others)


def per_sample_mm(w: Tensor, x3: Tensor,
                  bias: Optional[Tensor] = None) -> Tensor:
    """``w (Co, Ci) @ x3[b] (Ci, N)`` (+ bias) per sample into one (B, Co, N)
    map (``torch.matmul`` would compute the transpose and copy it back)."""
    out = x3.new_empty(x3.shape[0], w.shape[0], x3.shape[2])
    for i in range(x3.shape[0]):
        if bias is None:
            torch.mm(w, x3[i], out=out[i])
        else:
            torch.addmm(bias.view(-1, 1), w, x3[i], out=out[i])
    return out


def normalize(g: Tensor, weight: Tensor, bias: Tensor, mean: Tensor,
              rstd: Tensor) -> Tensor:
    """``weight * (g - mean) * rstd + bias``, per channel."""
    scale = rstd * weight
    return torch.addcmul((bias - mean * scale).view(1, -1, 1, 1), g,
                         scale.view(1, -1, 1, 1))


def _bn_train(ctx, g: Tensor,
              bn: nn.BatchNorm2d) -> Tuple[Tensor, Tensor, Tensor]:
    """``bn(g)`` in training: output, mean and inverse std; running
    statistics updated as ``bn`` does."""
    ctx.eps = bn.eps
    return torch.ops.aten.native_batch_norm(
        g, bn.weight, bn.bias, bn.running_mean, bn.running_var, True,
        bn_momentum(bn), bn.eps)


def _plain(x: Tensor, weight: Tensor, bias: Tensor, eps: float) -> Tensor:
    """The same by differentiable ops, no running update (double backward)."""
    return F.batch_norm(F.gelu(x), None, None, weight, bias, True, 0., eps)


def _bn_backward(ctx, grad: Tensor, g: Tensor, weight: Tensor, mean: Tensor,
                 rstd: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    return torch.ops.aten.native_batch_norm_backward(
        grad, g, weight, None, None, mean, rstd, True, ctx.eps,
        [True, ctx.needs_input_grad[1], ctx.needs_input_grad[2]])


class GeluBatchNorm(torch.autograd.Function):
    """``batch_norm(gelu(x))`` in training, saving x and the statistics."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor,
                bn: nn.BatchNorm2d) -> Tensor:
        out, mean, rstd = _bn_train(ctx, F.gelu(x), bn)
        ctx.save_for_backward(x, weight, bias, mean, rstd)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple:
        x, weight, bias, mean, rstd = ctx.saved_tensors
        if torch.is_grad_enabled():  # double backward: differentiable ops
            return plain_backward(_plain, ctx, (x, weight, bias), grad,
                                  ctx.eps)
        grad_g, grad_w, grad_b = _bn_backward(ctx, grad.contiguous(),
                                              F.gelu(x), weight, mean, rstd)
        return torch.ops.aten.gelu_backward(grad_g, x), grad_w, grad_b, None


class GeluBatchNormConv1x1(torch.autograd.Function):
    """``conv1x1(batch_norm(gelu(x)))`` in training, saving x, statistics."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor,
                conv_weight: Tensor, conv_bias: Optional[Tensor],
                bn: nn.BatchNorm2d) -> Tensor:
        y, mean, rstd = _bn_train(ctx, F.gelu(x), bn)
        ctx.has_conv_bias = conv_bias is not None
        ctx.save_for_backward(x, weight, bias, conv_weight, conv_bias, mean,
                              rstd)
        return F.conv2d(y, conv_weight, conv_bias)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple:
        x, weight, bias, conv_weight, conv_bias, mean, rstd = ctx.saved_tensors
        if torch.is_grad_enabled():  # double backward: differentiable ops
            return plain_backward(
                lambda *t: F.conv2d(_plain(*t[:3], t[-1]), t[3], t[4]), ctx,
                (x, weight, bias, conv_weight, conv_bias), grad, ctx.eps)
        g = F.gelu(x)
        B, C = g.shape[:2]
        w2 = conv_weight.reshape(conv_weight.shape[0], C)
        grad3 = grad.reshape(B, w2.shape[0], -1)
        grad_cw = grad_cb = None
        if ctx.needs_input_grad[3]:
            y = normalize(g, weight, bias, mean, rstd).reshape(B, C, -1)
            grad_cw = grad3[0] @ y[0].T  # per sample: no layout copies
            for i in range(1, B):
                grad_cw.addmm_(grad3[i], y[i].T)
            grad_cw = grad_cw.view_as(conv_weight)
            del y
        if ctx.has_conv_bias and ctx.needs_input_grad[4]:
            grad_cb = grad3.sum((0, 2))
        grad_y = per_sample_mm(w2.T, grad3).view_as(g)
        grad_g, grad_w, grad_b = _bn_backward(ctx, grad_y, g, weight, mean,
                                              rstd)
        return (torch.ops.aten.gelu_backward(grad_g, x), grad_w, grad_b,
                grad_cw, grad_cb, None)


def fused_step(layers: Sequence[nn.Module], i: int,
               x: Tensor) -> Tuple[Optional[Tensor], int]:
    """GELU, BatchNorm (and 1x1 conv) at ``layers[i]`` as one Function where
    :func:`fusable`: the output and the layers consumed, or (None, 0)."""
    if i + 1 >= len(layers) or not fusable(layers[i], layers[i + 1], x):
        return None, 0
    bn = layers[i + 1]
    conv = layers[i + 2] if i + 2 < len(layers) else None
    if conv is not None and plain_conv1x1(conv) and not hooked(conv):
        return GeluBatchNormConv1x1.apply(x, bn.weight, bn.bias, conv.weight,
                                          conv.bias, bn), 3
    return GeluBatchNorm.apply(x, bn.weight, bn.bias, bn), 2


# One depthwise conv: channels, padding, backward (training_method).
ConvLayout = Tuple[int, Tuple[int, int], str]


def _dw_convs(h: Tensor, params: Sequence[Optional[Tensor]],
              layout: Sequence[ConvLayout]) -> Tensor:
    """``h + cat_i(conv_i(h_i))`` over the channel groups h_i of h."""
    parts = h.split([c for c, _, _ in layout], dim=1)
    return torch.cat([
        F.conv2d(p, w, b, 1, pad, 1, c) for p, w, b, (c, pad, _) in zip(
            parts, params[::2], params[1::2], layout)
    ], dim=1).add_(h)


class GeluBatchNormDWConvs(torch.autograd.Function):
    """``h + cat_i(conv_i(h_i))``, ``h = batch_norm(gelu(x))`` in training:
    MS-FFN's depthwise convs and residual. Saves x and the statistics, not
    h: one hidden-size map fewer per block."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor, *rest) -> Tensor:
        *params, bn, layout = rest  # params: conv weight, bias, weight, ...
        h, mean, rstd = _bn_train(ctx, F.gelu(x), bn)
        ctx.layout = layout
        ctx.save_for_backward(x, weight, bias, mean, rstd, *params)
        return _dw_convs(h, params, layout)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple:
        x, weight, bias, mean, rstd, *params = ctx.saved_tensors
        if torch.is_grad_enabled():  # double backward: differentiable ops
            return plain_backward(
                lambda *t: _dw_convs(_plain(*t[:3], ctx.eps), t[3:],
                                     ctx.layout), ctx,
                (x, weight, bias, *params), grad) + (None, None)
        g = F.gelu(x)
        h = normalize(g, weight, bias, mean, rstd)
        grad = grad.contiguous()
        needs = ctx.needs_input_grad[3:]
        grads_h: List[Tensor] = []
        grads_params: List[Optional[Tensor]] = []
        start = 0
        for i, (c, pad, method) in enumerate(ctx.layout):
            part = slice(start, start + c)
            start += c
            grad_h, grad_w, grad_b = depthwise_backward(
                method, h[:, part], params[2 * i], grad[:, part], (1, 1),
                pad, (True, needs[2 * i], params[2 * i + 1] is not None
                      and needs[2 * i + 1]))
            grads_h.append(grad_h)
            grads_params += [grad_w, grad_b]
        del h
        grad_h = torch.cat(grads_h, dim=1).add_(grad)
        del grads_h
        grad_g, grad_w, grad_b = _bn_backward(ctx, grad_h, g, weight, mean,
                                              rstd)
        return (torch.ops.aten.gelu_backward(grad_g, x), grad_w, grad_b,
                *grads_params, None, None)


def plain_dwconv(module: nn.Module) -> bool:
    """An exact :class:`~.depthwise.DWConv2d` of stride 1, no dilation."""
    return (type(module) is DWConv2d and module.stride == (1, 1)
            and module.dilation == (1, 1) and module.padding_mode == 'zeros')


def gelu_bn_dwconvs(seq: nn.Sequential, multi_scale: nn.Module,
                    x: Tensor) -> Tensor:
    """``multi_scale(seq(x), residual=True)`` (MS-FFN's ``fc1``, ending in
    GELU and BatchNorm, and ``dwconv``), its tail one
    :class:`GeluBatchNormDWConvs` where :func:`fusable`."""
    act, bn = seq[-2], seq[-1]
    convs = list(multi_scale.proj)
    if hooked(seq) or hooked(multi_scale) or not all(
            plain_dwconv(c) for c in convs):
        return multi_scale(seq(x), residual=True)
    y = x
    for layer in list(seq)[:-2]:
        y = layer(y)
    if not fusable(act, bn, y, *convs):
        return multi_scale(inplace_(bn, inplace_(act, y)), residual=True)
    params: List[Optional[Tensor]] = []
    layout: List[ConvLayout] = []
    for c, conv in zip(multi_scale.splits, convs):
        params += [conv.weight, conv.bias]
        layout.append((c, conv.padding, training_method(y, conv.weight)))
    return GeluBatchNormDWConvs.apply(y, bn.weight, bn.bias, *params, bn,
                                      tuple(layout))
