"""Small helpers shared by the autograd Functions of the ops."""
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor, nn


def needs_grad(*tensors: Optional[Tensor]) -> bool:
    """Whether autograd records a call on these tensors."""
    return torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in tensors)


def plain_backward(op: Callable[..., Tensor], ctx,
                   inputs: Sequence[Optional[Tensor]], grad: Tensor,
                   *args) -> tuple:
    """The gradients of ``op(*inputs, *args)`` by PyTorch's differentiable
    backward, for double backward, which in-place formulas cannot give.
    ``args`` are non-tensor arguments (a ``None`` gradient each)."""
    with torch.enable_grad():
        out = op(*inputs, *args)
        wanted = [t for t, need in zip(inputs, ctx.needs_input_grad)
                  if need and t is not None]
        grads = iter(torch.autograd.grad(out, wanted, grad, create_graph=True))
    result = [next(grads) if need and t is not None else None
              for t, need in zip(inputs, ctx.needs_input_grad)]
    return tuple(result) + (None, ) * len(args)


def bn_momentum(bn: nn.BatchNorm2d) -> float:
    """Counts a training batch of ``bn``; its momentum, as
    ``nn.BatchNorm2d.forward`` computes it."""
    bn.num_batches_tracked.add_(1)
    return (1 / float(bn.num_batches_tracked) if bn.momentum is None
            else bn.momentum)
