"""IDConv's adaptive average pooling, with an export form."""
import torch
import torch.nn.functional as F
from torch import Tensor

from .rules import export_form


def pool_matrix(n, out: int, like: Tensor) -> Tensor:
    """(out, n) matrix of PyTorch's adaptive average pooling of one axis."""
    i = torch.arange(out, device=like.device)
    start = (i * n) // out
    end = ((i + 1) * n + out - 1) // out
    pos = torch.arange(n, device=like.device)
    mask = (pos >= start[:, None]) & (pos < end[:, None])
    return mask.to(like.dtype) / (end - start).to(like.dtype)[:, None]


def adaptive_avg_pool2d(x: Tensor, size: int) -> Tensor:
    """``F.adaptive_avg_pool2d(x, size)``; exported with symbolic sizes, by
    :func:`pool_matrix` (the exporter would bake in the example's windows)."""
    if export_form(*x.shape[-2:]):
        H, W = x.shape[-2:]
        return pool_matrix(H, size, x) @ x @ pool_matrix(W, size, x).T
    return F.adaptive_avg_pool2d(x, size)
