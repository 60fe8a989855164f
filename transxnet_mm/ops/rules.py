"""Where each kernel of :mod:`transxnet_mm.ops` runs: one table, decided here.

A block runs through the ops only where :func:`lean`; there every kernel
asks :func:`applies` (conditions: :func:`_decide`), and the ops' own gates
(norm type, process group, kernel size, map size) are the functions at the
end of this file. Kernels step aside under autocast (they would bypass its
casts), tracing and compiling. Norms are matched by exact type: a subclass
may change the forward. Inside :func:`exporting` the ops take their export
form.
"""
import os
from contextlib import contextmanager
from typing import (Callable, Dict, FrozenSet, Iterator, NamedTuple,
                    Optional, Sequence, Tuple, Union)

import torch
import torch.distributed as dist
from mmengine.model.utils import _BatchNormXd
from mmengine.utils.dl_utils.parrots_wrapper import \
    SyncBatchNorm as _MMSyncBatchNorm
from torch import Tensor, nn
from torch.nn.modules import module as _module
from torch.nn.modules.utils import _pair

from .utils import needs_grad
from ..utils.compat import autocast_enabled, is_compiling


class Rule(NamedTuple):
    devices: FrozenSet[str]  # device types it runs on
    mode: str  # 'training', 'inference' or 'any'
    what: str


CPU = frozenset({'cpu'})

# The table (what each saves: docs/benchmarks.md). None runs on CUDA until
# a GPU run has checked it against the plain ops and shown that it pays.
KERNELS: Dict[str, Rule] = {
    'bias_resize': Rule(CPU, 'any',
                        "each stage's position bias resized separably"),
    'attention': Rule(CPU, 'training',
                      'attention matrix recomputed in backward, not saved'),
    'depthwise': Rule(CPU, 'training',
                      'weight gradient of 5x5 and 7x7 depthwise convs'),
    'gelu_bn': Rule(CPU, 'training',
                    'GELU -> BatchNorm (-> 1x1 conv | -> depthwise convs) '
                    'saving only the input'),
    'layer_scale': Rule(CPU, 'training',
                        'layer scale folded into the BatchNorm before it'),
    'inplace': Rule(CPU, 'inference',
                    'GELU, BatchNorm and residual sums in place'),
}

_disabled: FrozenSet[str] = frozenset()
_exporting = False
# Device types every kernel may also run on, for verify_cuda.py's checks
# only (its subprocesses get it through this variable).
_verifying: FrozenSet[str] = frozenset(
    d for d in os.environ.get('TRANSXNET_MM_VERIFY_ON', '').split(',') if d)
# explain's listener and the device type it assumes (None: the tensor's).
_listener: Optional[Callable[[str, bool, str], None]] = None
_assumed_device: Optional[str] = None


def _names(names: Sequence[str]) -> FrozenSet[str]:
    unknown = set(names) - set(KERNELS)
    if unknown:
        raise ValueError(f'unknown kernel(s) {sorted(unknown)}; the kernels '
                         f'are {sorted(KERNELS)}')
    return frozenset(names or KERNELS)


def kernels_enabled(name: Optional[str] = None) -> bool:
    """Whether kernel ``name`` is on (by default all are); without a name,
    whether any is."""
    if name is None:
        return len(_disabled) < len(KERNELS)
    return name in _names([name]) - _disabled


@contextmanager
def use_kernels(enabled: bool, *names: str) -> Iterator[None]:
    """Turn the kernels named (default: all) on or off inside the block,
    process-wide (not per thread)::

        with transxnet_mm.ops.use_kernels(False, 'depthwise'):
            outs = model(x)
    """
    global _disabled
    chosen = _names(names)
    previous = _disabled
    _disabled = previous - chosen if enabled else previous | chosen
    try:
        yield
    finally:
        _disabled = previous


@contextmanager
def verifying(device: str) -> Iterator[None]:
    """Inside, every kernel may also run on ``device``, to be checked there
    (tools/analysis_tools/verify_cuda.py)."""
    global _verifying
    previous = _verifying
    _verifying = previous | {device}
    try:
        yield
    finally:
        _verifying = previous


@contextmanager
def exporting() -> Iterator[None]:
    """Inside, the model is being exported: no kernel applies, and ops take
    their export form (:func:`export_form`). Process-wide."""
    global _exporting
    previous, _exporting = _exporting, True
    try:
        yield
    finally:
        _exporting = previous


def is_symbolic(*sizes) -> bool:
    """Whether any size is symbolic (a dynamic dimension of an export)."""
    return any(isinstance(s, torch.SymInt) for s in sizes)


def export_form(*sizes) -> bool:
    """Whether ops take their export form: inside :func:`exporting`, and if
    ``sizes`` are given, one is symbolic (fixed sizes export as they are)."""
    return _exporting and (not sizes or is_symbolic(*sizes))


def eager() -> bool:
    """Neither traced nor compiled: Python-side kernels may run."""
    return not (torch.jit.is_tracing() or is_compiling())


def _verified(name: str, x: Tensor) -> Tuple[bool, str]:
    """Whether kernel ``name`` may run on ``x``'s device (or the one
    :func:`listening` assumes), and that device type."""
    device = _assumed_device or x.device.type
    return device in KERNELS[name].devices | _verifying, device


def lean(module: nn.Module, x: Tensor) -> bool:
    """Whether ``module`` may run its forward on ``x`` through the ops (fused
    in training, in place at inference) instead of calling each layer: eager,
    a kernel on and verified on ``x``'s device (else PyTorch's modules run
    as they are), and no forward hook on or inside it (a hook sees every
    layer called and its output as the layer gave it)."""
    return eager() and any(
        name not in _disabled and _verified(name, x)[0]
        for name in KERNELS) and not (
            _module._global_forward_hooks or _module._global_forward_pre_hooks
            or any(m._forward_hooks or m._forward_pre_hooks
                   for m in module.modules()))


def _decide(name: str, x: Tensor,
            grad_from: Sequence[Optional[Tensor]]) -> Tuple[bool, str]:
    """Whether kernel ``name`` applies, and why (or why not)."""
    rule = KERNELS[name]
    if name in _disabled:
        return False, 'turned off (use_kernels)'
    if _exporting:
        return False, 'exporting: the export form runs'
    if not eager():
        return False, 'traced or compiled'
    verified, device = _verified(name, x)
    if not verified:
        return False, f'not verified on {device}: PyTorch\'s op'
    if autocast_enabled(x.device.type):
        return False, 'autocast picks the dtypes'
    if rule.mode == 'training' and not needs_grad(*(grad_from or (x, ))):
        return False, 'no gradient recorded'
    if rule.mode == 'inference' and torch.is_grad_enabled():
        return False, 'gradients recorded'
    return True, rule.what


def applies(name: str, x: Tensor, *grad_from: Optional[Tensor]) -> bool:
    """Whether kernel ``name`` replaces the plain computation on ``x``.
    ``grad_from``: the tensors whose gradients a training kernel computes
    (default ``x``)."""
    taken, why = _decide(name, x, grad_from)
    if _listener is not None:
        _listener(name, taken, why)
    return taken


def refuse(name: str, why: str) -> bool:
    """Tells the listener a kernel is not taken for the op's own reason;
    returns False."""
    if _listener is not None:
        _listener(name, False, why)
    return False


@contextmanager
def listening(listener: Callable[[str, bool, str], None],
              device: Union[str, None] = None) -> Iterator[None]:
    """Inside, every decision is told to ``listener`` (kernel, taken, why);
    with ``device``, the rules decide as for that device type (the ops still
    run where the tensors are)."""
    global _listener, _assumed_device
    previous = _listener, _assumed_device
    _listener, _assumed_device = listener, device
    try:
        yield
    finally:
        _listener, _assumed_device = previous


# Norms whose forward is nn.BatchNorm2d's: BN, and SyncBN as MMEngine reverts
# it in one process (a SyncBatchNorm only in eval mode).
_BATCH_NORMS = (nn.BatchNorm2d, _BatchNormXd)
# nn.SyncBatchNorm, and MMEngine's subclass that a config's SyncBN builds.
SYNC_BATCH_NORMS = (nn.SyncBatchNorm, _MMSyncBatchNorm)


def _affine_tracked(module: nn.Module) -> bool:
    return (module.track_running_stats and module.affine
            and module.running_var is not None)


def plain_batch_norm(module: nn.Module) -> bool:
    """A norm whose forward in its current mode is ``nn.BatchNorm2d``'s, with
    running statistics and an affine transform."""
    exact = type(module) in _BATCH_NORMS or (
        type(module) in SYNC_BATCH_NORMS and not module.training)
    return exact and _affine_tracked(module)


def _synchronised(module: nn.Module) -> bool:
    """Whether a SyncBatchNorm in training syncs over more than one
    process (as its own forward decides)."""
    if not (dist.is_available() and dist.is_initialized()):
        return False
    group = module.process_group or dist.group.WORLD
    return dist.get_world_size(group) > 1


def training_batch_norm(module: nn.Module) -> bool:
    """A training BatchNorm that normalises over the local batch, as the
    kernels compute it (under DDP, PyTorch's SyncBatchNorm runs)."""
    return module.training and _affine_tracked(module) and (
        type(module) in _BATCH_NORMS or (
            type(module) in SYNC_BATCH_NORMS and not _synchronised(module)))


# The ops' own conditions, beside the table.

# Depthwise convs of maps with fewer pixels keep oneDNN's backward.
MIN_PIXELS = 28 * 28


def depthwise_method(x: Tensor, weight: Tensor,
                     stride: Union[int, Tuple[int, int]] = 1) -> str:
    """The backward a depthwise conv takes in training: ``'cpu'`` (large
    maps), ``'channels_last'`` (5x5 and larger, stride 1, where
    ``'depthwise'`` applies) or ``'plain'`` (PyTorch's NCHW conv)."""
    if min(weight.shape[2:]) < 5 or _pair(stride) != (1, 1):
        if needs_grad(x, weight):
            refuse('depthwise', '3x3 or strided: PyTorch\'s conv is faster')
        return 'plain'
    if not applies('depthwise', x, x, weight):
        return 'plain'
    return 'cpu' if x.shape[2] * x.shape[3] >= MIN_PIXELS else 'channels_last'


def fuses_gelu_bn(bn: nn.Module, x: Tensor, *weights: Tensor) -> bool:
    """Whether ``bn(gelu(x))`` (and the convs of ``weights`` reading it) run
    as one Function: a training BatchNorm of the local batch where
    ``'gelu_bn'`` applies."""
    if not bn.training:
        return False  # inference: in place there
    if not training_batch_norm(bn):
        return refuse('gelu_bn', 'not a BatchNorm of the local batch')
    return applies('gelu_bn', x, x, bn.weight, *weights)


def folds_layer_scale(bn: nn.Module, x: Tensor, weight: Tensor) -> bool:
    """Whether a layer scale of ``weight`` folds into ``bn(x)``: a training
    BatchNorm of the local batch where ``'layer_scale'`` applies."""
    return training_batch_norm(bn) and applies('layer_scale', x, x,
                                               bn.weight, weight)


def in_place_batch_norm(bn: nn.Module, x: Tensor) -> bool:
    """Whether ``bn(x)`` may be written into ``x``: an eval-mode BatchNorm
    where ``'inplace'`` applies."""
    return plain_batch_norm(bn) and not bn.training and applies('inplace', x)
