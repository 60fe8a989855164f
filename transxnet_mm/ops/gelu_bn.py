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

from .depthwise import depthwise_backward, depthwise_conv2d
from .inplace import batch_norm_, gelu_
from .rules import applies, depthwise_method, fuses_gelu_bn
from .utils import bn_momentum, plain_backward


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


# One depthwise conv: channels, padding, backward (rules.depthwise_method).
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


def gelu_bn_conv(x: Tensor, bn: nn.Module, weight: Tensor,
                 bias: Optional[Tensor]) -> Tensor:
    """``conv1x1(bn(gelu(x)), weight, bias)``: one
    :class:`GeluBatchNormConv1x1` in training where
    :func:`~.rules.fuses_gelu_bn`."""
    if fuses_gelu_bn(bn, x, weight):
        return GeluBatchNormConv1x1.apply(x, bn.weight, bn.bias, weight, bias,
                                          bn)
    return F.conv2d(batch_norm_(bn, gelu_(x)), weight, bias)


def gelu_bn_dwconvs(x: Tensor, bn: nn.Module, weights: Sequence[Tensor],
                    biases: Sequence[Optional[Tensor]]) -> Tensor:
    """``h + cat_i(dwconv_i(h_i))``, ``h = bn(gelu(x))``, over the channel
    groups h_i of the depthwise convs' weights (stride 1, same padding):
    MS-FFN's hidden step. One :class:`GeluBatchNormDWConvs` in training
    where :func:`~.rules.fuses_gelu_bn`; at inference the sums are written
    into h."""
    pads = [(w.shape[2] // 2, w.shape[3] // 2) for w in weights]
    if fuses_gelu_bn(bn, x, *weights):
        params: List[Optional[Tensor]] = []
        layout: List[ConvLayout] = []
        for w, b, pad in zip(weights, biases, pads):
            params += [w, b]
            layout.append((w.shape[0], pad, depthwise_method(x, w)))
        return GeluBatchNormDWConvs.apply(x, bn.weight, bn.bias, *params, bn,
                                          tuple(layout))
    h = batch_norm_(bn, gelu_(x))
    parts = h.split([w.shape[0] for w in weights], dim=1)
    convs = zip(parts, weights, biases, pads)
    if applies('inplace', h):
        for part, w, b, pad in convs:
            part += depthwise_conv2d(part, w, b, padding=pad)
        return h
    return h + torch.cat([depthwise_conv2d(p, w, b, padding=pad)
                          for p, w, b, pad in convs], dim=1)
