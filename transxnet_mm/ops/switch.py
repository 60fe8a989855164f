"""When the kernels of :mod:`transxnet_mm.ops` run, and the switch that turns
them all off.

The kernels are eager-mode CPU replacements of PyTorch ops (autograd
Functions) and in-place shortcuts at inference. They step aside, and plain
PyTorch ops run, when:

* the switch is off (:func:`use_kernels`),
* the model is traced (``torch.jit.trace``, the FLOPs counter, ONNX export)
  or compiled (``torch.compile``, ``torch.export``),
* autocast is on for the tensor's device (autocast picks each op's dtype;
  the kernels would bypass its casts),
* for the CPU Functions: the tensor is not on the CPU (CUDA runs PyTorch's
  own kernels), and for the in-place shortcuts: gradients are recorded or a
  hook is registered on the module that would be bypassed.
"""
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import Tensor, nn
from torch.nn.modules import module as _module

from ..torch_compat import autocast_enabled, is_compiling

_enabled = True


def kernels_enabled() -> bool:
    """Whether the switch is on (the default)."""
    return _enabled


@contextmanager
def use_kernels(enabled: bool) -> Iterator[None]:
    """Turn every kernel of :mod:`transxnet_mm.ops` on or off inside the
    block; off, the model runs plain PyTorch ops only (same outputs to
    float32 rounding)::

        with transxnet_mm.ops.use_kernels(False):
            outs = model(x)

    The switch is process-wide (not per thread)."""
    global _enabled
    previous, _enabled = _enabled, bool(enabled)
    try:
        yield
    finally:
        _enabled = previous


def eager() -> bool:
    """The switch is on and the code is neither traced nor compiled."""
    return _enabled and not (torch.jit.is_tracing() or is_compiling())


def cpu_kernel(x: Tensor) -> bool:
    """Whether a CPU Function may replace PyTorch's op for ``x``."""
    return (x.device.type == 'cpu' and eager()
            and not autocast_enabled('cpu'))


def inference(x: Tensor) -> bool:
    """Whether intermediate maps like ``x`` may be overwritten: no gradients
    are recorded, the kernels are on and autocast is off (in-place results
    would keep the input's dtype where autocast would promote)."""
    return (not torch.is_grad_enabled() and eager()
            and not autocast_enabled(x.device.type))


def hooked(module: nn.Module) -> bool:
    """Whether a forward hook (global or the module's own) would see a call
    of ``module``: in-place shortcuts then call the module as it is, so every
    hook runs at inference as in training."""
    return bool(module._forward_hooks or module._forward_pre_hooks
                or _module._global_forward_hooks
                or _module._global_forward_pre_hooks)
