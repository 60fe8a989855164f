"""Attention with an additive position bias: ``softmax(q k^T * scale +
bias) v``.

At inference this is SDPA (the N x M matrix is never stored). For CPU
training with a bias that needs a gradient, SDPA's math path keeps that
matrix for backward (at detection sizes most of a step's memory); here it is
recomputed in backward from q, k and the bias, in one buffer per matrix.
"""
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .rules import applies
from .utils import plain_backward


def _probs(q: Tensor, k: Tensor, bias: Tensor, scale: float) -> Tensor:
    """``softmax(q k^T * scale + bias)`` of folded heads, q (B*h, N, d), k
    (B*h, M, d), bias (1, h, N, M), in one N x M buffer: the softmax is
    written over its input (the same bits as ``softmax``, no fresh map)."""
    h, N, M = bias.shape[1:]
    logits = q.new_empty(q.shape[0], N, M)
    logits.view(-1, h, N, M).copy_(bias)
    logits.baddbmm_(q, k.mT, alpha=scale)
    return torch.ops.aten._softmax.out(logits, -1, False, out=logits)


def _plain(q: Tensor, k: Tensor, v: Tensor, bias: Tensor,
           scale: float) -> Tensor:
    """The same by differentiable ops (for double backward)."""
    h, N, M = bias.shape[1:]
    logits = torch.baddbmm(
        bias.expand(q.shape[0] // h, h, N, M).reshape(-1, N, M), q, k.mT,
        alpha=scale)
    return torch.bmm(logits.softmax(dim=-1), v)


class BiasedAttention(torch.autograd.Function):
    """Attention of folded heads that saves q, k, v and the bias, not the
    attention matrix, which backward computes again."""

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, bias: Tensor,
                scale: float) -> Tensor:
        ctx.save_for_backward(q, k, v, bias)
        ctx.scale = scale
        return torch.bmm(_probs(q, k, bias, scale), v)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tuple:
        q, k, v, bias = ctx.saved_tensors
        if torch.is_grad_enabled():  # double backward: differentiable ops
            return plain_backward(_plain, ctx, (q, k, v, bias), grad,
                                  ctx.scale)
        probs = _probs(q, k, bias, ctx.scale)
        grad = grad.contiguous()
        grad_v = torch.bmm(probs.mT, grad) if ctx.needs_input_grad[2] else None
        grad_logits = torch.bmm(grad, v.mT)  # softmax's backward over it
        torch.ops.aten._softmax_backward_data.out(
            grad_logits, probs, -1, probs.dtype, grad_input=grad_logits)
        del probs
        grad_q = grad_k = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_q = torch.bmm(grad_logits, k).mul_(ctx.scale)
        if ctx.needs_input_grad[1]:
            grad_k = torch.bmm(grad_logits.mT, q).mul_(ctx.scale)
        if ctx.needs_input_grad[3]:
            grad_bias = grad_logits.view((-1, ) + bias.shape[1:]).sum(
                0, keepdim=True)
        return grad_q, grad_k, grad_v, grad_bias, None


def biased_attention(q: Tensor, k: Tensor, v: Tensor, bias: Tensor,
                     scale: float) -> Tensor:
    """q (B, heads, N, d), k and v (B, heads, M, d), bias (1, heads, N, M):
    :class:`BiasedAttention` where ``'attention'`` applies, else SDPA."""
    if applies('attention', q, q, k, v, bias):
        B, h, N, d = q.shape
        M = k.shape[2]
        return BiasedAttention.apply(
            q.reshape(B * h, N, d), k.reshape(B * h, M, d),
            v.reshape(B * h, M, d), bias, scale).view(B, h, N, d)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype),
                                          scale=scale)
