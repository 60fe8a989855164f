"""The relative position bias resized bicubically to the attention shape.

PyTorch's CPU backward scatters each output gradient into 4x4 inputs one by
one. The resize is separable, ``out = R_N bias R_M^T`` (4 taps per row of
R_N), so forward and backward are a few products (docs/benchmarks.md), with
PyTorch's taps (:func:`cubic_taps`): equal to float32 rounding.
"""
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .rules import applies, export_form


def bicubic(x: Tensor, size: Tuple[int, int]) -> Tensor:
    """The authors' resize (bicubic, align_corners False)."""
    return F.interpolate(x, size=size, mode='bicubic', align_corners=False)


def cubic_taps(n, out, like: Tensor) -> Tuple[Tensor, Tensor]:
    """Source indices and weights, each (4, out), of PyTorch's bicubic
    resize (A = -0.75, edges clamped) of an axis from ``n`` to ``out`` (may
    be symbolic)."""
    A = -0.75
    i = torch.arange(out, device=like.device, dtype=torch.float64) + 0.5
    if like.dtype == torch.float64:  # PyTorch computes in double then
        scale = torch.full((), n, dtype=torch.float64, device=like.device)
        src = scale / out * i - 0.5
    else:
        # As PyTorch: the scale in float32, then scale * (i + 0.5) - 0.5
        # rounded once (a fused multiply-add); rounding twice moves them.
        scale = torch.full((), n, dtype=torch.float32,
                           device=like.device) / out
        src = (scale.double() * i - 0.5).float()
    floor = src.floor()
    t = (src - floor).to(like.dtype)

    def near(d):  # |d| <= 1
        return ((A + 2) * d - (A + 3)) * d * d + 1

    def far(d):  # 1 < |d| < 2
        return ((A * d - 5 * A) * d + 8 * A) * d - 4 * A

    weights = torch.stack([far(t + 1), near(t), near(1 - t), far(2 - t)])
    taps = torch.arange(-1, 3, device=like.device)[:, None]
    index = (floor.long() + taps).clamp(min=0)
    return torch.minimum(index, torch.full_like(index, n - 1)), weights


def taps_matrix(n, out, like: Tensor) -> Tensor:
    """The (out, n) matrix of :func:`cubic_taps` (clamped taps add up)."""
    index, weights = cubic_taps(n, out, like)
    cols = torch.arange(n, device=like.device)
    return ((index[..., None] == cols).to(like.dtype) *
            weights[..., None]).sum(0)


def bicubic_by_taps(x: Tensor, size: Sequence) -> Tensor:
    """``bicubic(x, size)`` of a 4-D ``x`` as gathers and one product: the
    export form, as onnxruntime's cubic ``Resize`` is slow
    (docs/deployment.md)."""
    (h, w), (oh, ow) = x.shape[-2:], size
    index, weights = cubic_taps(h, oh, x)
    x = sum(x.index_select(-2, index[c]) * weights[c][:, None]
            for c in range(4))
    return x @ taps_matrix(w, ow, x).T


def resize_bias(bias: Tensor, size: Tuple[int, int],
                block: int = 256) -> Tensor:
    """``bicubic(bias, size)`` of a (1, heads, N, M) bias: a product along
    keys, then banded products along queries, each block of ``block`` rows
    reading only the source rows its taps touch."""
    (N, M), (N2, M2) = bias.shape[2:], size
    if M2 != M:
        bias = bias @ taps_matrix(M, M2, bias).T
    if N2 == N:
        return bias
    index, weights = cubic_taps(N, N2, bias)
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
        # Linear in grad, differentiable ops: fine for double backward.
        (N, M), (N2, M2) = ctx.in_size, tuple(grad.shape[2:])
        grad = grad @ taps_matrix(M, M2, grad)  # (1, heads, N2, M)
        index, weights = cubic_taps(N, N2, grad)
        out = grad.new_zeros(grad.shape[:2] + (N, M))
        for c in range(4):
            out.index_add_(2, index[c], grad * weights[c][:, None])
        return out, None


def resize_pos_bias(bias: Tensor, size: Tuple[int, int]) -> Tensor:
    """A stage's position bias resized to ``size`` = (queries, keys).

    Detached when no gradient is recorded: CPU SDPA takes its slow math
    path for any mask that requires grad."""
    if not (torch.is_grad_enabled() and bias.requires_grad):
        bias = bias.detach()
    if tuple(bias.shape[2:]) == tuple(size):
        return bias
    if export_form():
        return bicubic_by_taps(bias, size)
    if applies('bias_resize', bias):
        return BicubicResize.apply(bias, size)
    return bicubic(bias, size)
