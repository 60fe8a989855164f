"""The relative position bias resized to the attention shape: separable,
banded, and with a fast backward.

The authors resize each stage's (1, heads, N, M) bias, stored for a 224x224
input, like an image: bicubic, align_corners False (``F.interpolate``).
PyTorch's kernel does 16 multiply-adds per output and its CPU backward
scatters every output gradient into 4x4 inputs one by one. The resize is
linear and separable, ``out = R_N bias R_M^T`` with R_N holding 4 taps per
row, so the forward is one product along keys and banded products along
queries, and the backward ``R_N^T grad R_M`` one product and four
``index_add`` (timings: docs/benchmarks.md). R_M and the taps' weights are
read from ``F.interpolate`` itself, on probe inputs, so they are PyTorch's
float32 weights; results agree with ``F.interpolate`` to float32 rounding.
"""
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .rules import applies


def bicubic(x: Tensor, size: Tuple[int, int]) -> Tensor:
    """The authors' resize (bicubic, align_corners False)."""
    return F.interpolate(x, size=size, mode='bicubic', align_corners=False)


def _key_matrix(M: int, M2: int, like: Tensor) -> Tensor:
    """R_M^T (M, M2) of PyTorch's bicubic resize of M columns to M2: the
    rows of the resized identity (its float32 weights)."""
    eye = torch.eye(M, device=like.device, dtype=like.dtype)[None, None]
    return bicubic(eye, (M, M2))[0, 0]


def _query_taps(N: int, N2: int, like: Tensor) -> Tuple[Tensor, Tensor]:
    """Source rows (4, N2) and their float32 weights (4, N2) of PyTorch's
    bicubic resize of N rows to N2 (align_corners False).

    Output row n reads rows base..base+3 (clamped), one of each residue
    mod 4, so probe c (ones on the rows = c mod 4) resized by
    ``F.interpolate`` itself gives the weight of the tap of residue c (taps
    clamped onto the same row add up, as in PyTorch). The first tap is
    computed as PyTorch does, in float32; where rounding could move it
    (source position within float eps of an integer) the misplaced tap's
    weight is ~0, so the error stays at rounding level.
    """
    rows = torch.arange(N, device=like.device)
    probes = (rows % 4 == torch.arange(4, device=like.device)[:, None])
    weights = bicubic(probes.to(like.dtype)[None, :, :, None],
                      (N2, 1))[0, :, :, 0]
    src = (torch.arange(N2, device=like.device, dtype=torch.float32) +
           0.5) * (N / N2) - 0.5
    base = src.floor().long().clamp(max=N - 1) - 1
    c = torch.arange(4, device=like.device)[:, None]
    return (base + (c - base) % 4).clamp(0, N - 1), weights


def resize_bias(bias: Tensor, size: Tuple[int, int],
                block: int = 256) -> Tensor:
    """``bicubic(bias, size)`` of a (1, heads, N, M) bias, separably: along
    keys a product with R_M^T, then along queries banded products, each block
    of ``block`` output rows reading the few (~block * N / N2 + 4) source
    rows its taps touch."""
    (N, M), (N2, M2) = bias.shape[2:], size
    if M2 != M:
        bias = bias @ _key_matrix(M, M2, bias)
    if N2 == N:
        return bias
    index, weights = _query_taps(N, N2, bias)
    blocks = -(-N2 // block)
    first = index[:, ::block].amin(0)  # first source row of each block
    last = F.pad(index, (0, blocks * block - N2), mode='replicate')
    width = int((last[:, block - 1::block].amax(0) - first).max()) + 1
    # R_N as (blocks, block, width): the taps of each block's rows.
    r_n = bias.new_zeros(blocks * block, width)
    rows = torch.arange(N2, device=bias.device).expand(4, N2)
    r_n.index_put_((rows, index - first.repeat_interleave(block)[:N2]),
                   weights, accumulate=True)
    r_n = r_n.view(blocks, block, width)
    window = (first[:, None] + torch.arange(width, device=bias.device))
    window = bias[0][:, window.clamp(max=N - 1)]  # (heads, blocks, width, M2)
    out = bias.new_empty(bias.shape[:2] + (N2, M2))
    full = N2 // block
    for h in range(bias.shape[1]):
        torch.bmm(r_n[:full], window[h, :full],
                  out=out[0, h, :full * block].view(full, block, M2))
        if full < blocks:
            torch.mm(r_n[full, :N2 - full * block], window[h, full],
                     out=out[0, h, full * block:])
    return out


class BicubicResize(torch.autograd.Function):
    """:func:`resize_bias` with the backward ``R_N^T grad R_M``."""

    @staticmethod
    def forward(ctx, bias: Tensor, size: Tuple[int, int]) -> Tensor:
        ctx.in_size = tuple(bias.shape[2:])
        return resize_bias(bias, size)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tuple[Tensor, None]:
        # Linear in grad and made of differentiable ops: double backward
        # needs no other path.
        (N, M), (N2, M2) = ctx.in_size, tuple(grad.shape[2:])
        grad = grad @ _key_matrix(M, M2, grad).T  # (1, heads, N2, M)
        index, weights = _query_taps(N, N2, grad)
        out = grad.new_zeros(grad.shape[:2] + (N, M))
        for c in range(4):
            out.index_add_(2, index[c], grad * weights[c][:, None])
        return out, None


def resize_pos_bias(bias: Tensor, size: Tuple[int, int]) -> Tensor:
    """A stage's position bias for an attention of ``size`` = (queries,
    keys): resized bicubically where the shape differs, by
    :class:`BicubicResize` where the ``'bias_resize'`` kernel applies, else
    ``F.interpolate``. Detached when no gradient is recorded: CPU SDPA takes
    its slow math path for any mask that requires grad."""
    if not (torch.is_grad_enabled() and bias.requires_grad):
        bias = bias.detach()
    if tuple(bias.shape[2:]) == tuple(size):
        return bias
    if applies('bias_resize', bias):
        return BicubicResize.apply(bias, size)
    return bicubic(bias, size)
