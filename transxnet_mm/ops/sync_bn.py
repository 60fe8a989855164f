"""Training BatchNorm over a process group, as ``nn.SyncBatchNorm`` computes
it under DDP, for the Functions that fuse a BatchNorm with its neighbours
(:mod:`.gelu_bn`, :mod:`.layer_scale`).

The paper configs' ``SyncBN`` stays ``nn.SyncBatchNorm`` in a distributed
run. Its statistics are those of the whole group's batch: the forward
gathers every process's per-channel mean, biased variance and element count
(counts differ with image sizes) and combines them; the backward sums
``dy`` and ``dy * x_hat`` over the group before the input gradient.
Parameter gradients stay local (DDP reduces them), running statistics take
the group's mean and unbiased variance, as SyncBatchNorm does. PyTorch's own
synchronised kernels (``torch.batch_norm_stats`` and the rest) exist for
CUDA only; these are plain tensor ops and ``torch.distributed``
collectives, so the same code runs, and is tested with gloo, on CPU.
"""
from typing import Optional, Tuple

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .rules import SYNC_BATCH_NORMS
from .utils import bn_momentum, local_forward

_CHANNEL = (1, -1, 1, 1)  # a per-channel vector against an NCHW map


def sync_group(bn: nn.Module) -> Optional['dist.ProcessGroup']:
    """The process group whose batch a training SyncBatchNorm normalises
    over, as its forward decides; None where a BatchNorm uses the local
    batch (another type, eval mode, no process group, a group of one)."""
    if type(bn) not in SYNC_BATCH_NORMS or not bn.training or not (
            dist.is_available() and dist.is_initialized()):
        return None
    group = bn.process_group or dist.group.WORLD
    return group if dist.get_world_size(group) > 1 else None


def group_batch_stats(g: Tensor, bn: nn.Module,
                      group) -> Tuple[Tensor, Tensor, Tensor]:
    """Mean, inverse std and element count per channel of the group's
    batch (each process passes its part ``g``); ``bn``'s running statistics
    updated with them."""
    channels = g.shape[1]
    count = g.new_full((1, ), g.numel() // channels)
    if g.numel():
        var, mean = torch.var_mean(g, dim=(0, 2, 3), correction=0)
        local = torch.cat([mean, var, count])
    else:  # an empty part still joins the collective, with weight 0
        local = g.new_zeros(2 * channels + 1)
    parts = [torch.empty_like(local)
             for _ in range(dist.get_world_size(group))]
    dist.all_gather(parts, local, group=group)
    means, variances, counts = torch.stack(parts).split(
        [channels, channels, 1], dim=1)
    total = counts.sum()
    weights = counts / total
    mean = (weights * means).sum(0)
    var = (weights * (variances + (means - mean)**2)).sum(0)
    momentum = bn_momentum(bn)
    with torch.no_grad():
        bn.running_mean.lerp_(mean, momentum)
        bn.running_var.lerp_(var * (total / (total - 1)), momentum)
    return mean, torch.rsqrt(var + bn.eps), total


def normalize(g: Tensor, weight: Tensor, bias: Tensor, mean: Tensor,
              rstd: Tensor) -> Tensor:
    """``weight * (g - mean) * rstd + bias``, per channel: a training
    BatchNorm's output from its statistics (also what the fused Functions
    recompute in backward)."""
    scale = rstd * weight
    return torch.addcmul((bias - mean * scale).view(_CHANNEL), g,
                         scale.view(_CHANNEL))


def group_batch_norm_backward(
        grad: Tensor, g: Tensor, weight: Tensor, mean: Tensor, rstd: Tensor,
        total: Tensor, group) -> Tuple[Tensor, Tensor, Tensor]:
    """Gradients of :func:`normalize` with the group's statistics: the
    input's (reductions summed over the group), the weight's and the
    bias's (this process's part, for DDP to reduce)."""
    x_hat = (g - mean.view(_CHANNEL)).mul_(rstd.view(_CHANNEL))
    sum_dy = grad.sum((0, 2, 3))
    sum_dy_xhat = (grad * x_hat).sum((0, 2, 3))
    reduced = torch.cat([sum_dy, sum_dy_xhat])  # a copy: both stay local
    dist.all_reduce(reduced, group=group)
    mean_dy, mean_dy_xhat = (reduced / total).chunk(2)
    grad_g = x_hat.mul_(-mean_dy_xhat.view(_CHANNEL)).add_(grad).sub_(
        mean_dy.view(_CHANNEL)).mul_((rstd * weight).view(_CHANNEL))
    return grad_g, sum_dy_xhat, sum_dy


class GroupBatchNorm(torch.autograd.Function):
    """``nn.SyncBatchNorm``'s training forward over ``group`` with the
    weight and bias given (e.g. a layer scale folded in); saves the input
    and the statistics."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor, bn: nn.Module,
                group) -> Tensor:
        mean, rstd, total = group_batch_stats(x, bn, group)
        ctx.group = group
        ctx.save_for_backward(x, weight, mean, rstd, total)
        return normalize(x, weight, bias, mean, rstd)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple:
        if torch.is_grad_enabled():  # double backward: refused
            local_forward(ctx)
        x, weight, mean, rstd, total = ctx.saved_tensors
        grads = group_batch_norm_backward(grad.contiguous(), x, weight, mean,
                                          rstd, total, ctx.group)
        return grads + (None, None)
