"""Workarounds for the pinned stack, each with the upstream behaviour it covers.

- torch 2.1 (mmcv 2.1.0's CUDA wheels) to 2.13: newer torch APIs with a
  torch 2.1 fallback, so no other module tests torch versions
  (tests/test_torch_compat.py hides the newer APIs to check the fallbacks).
- torch >= 2.6's ``weights_only`` loading: numpy scalars of mmseg 0.30
  checkpoints, MMEngine's training state (:func:`trusted_local_checkpoints`).
- MMEngine's distributed launch on a CPU-only torch
  (:func:`cpu_distributed`).
"""
import logging
import os
import os.path as osp
import pickle
import sys
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator

import torch
import torch.distributed as dist
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.runner.checkpoint import CheckpointLoader
from mmengine.visualization import Visualizer

__all__ = ['is_compiling', 'autocast_enabled', 'safe_globals',
           'allow_numpy_scalars', 'trusted_local_checkpoints',
           'cpu_distributed']


def _dynamo_is_compiling() -> bool:
    # torch 2.0-2.2 import torch._dynamo lazily: on first use, not on import.
    return torch._dynamo.is_compiling()


def _pick_is_compiling() -> Callable[[], bool]:
    if hasattr(getattr(torch, 'compiler', None), 'is_compiling'):
        return torch.compiler.is_compiling  # torch >= 2.3
    return _dynamo_is_compiling


def _pick_autocast_takes_device() -> bool:
    try:
        torch.is_autocast_enabled('cpu')  # torch >= 2.4
        return True
    except TypeError:  # "is_autocast_enabled() takes no arguments (1 given)"
        return False


# Chosen once at import: Dynamo (torch 2.1) cannot trace the feature checks
# (hasattr on modules, try/except), only the chosen call.
_is_compiling = _pick_is_compiling()
_AUTOCAST_TAKES_DEVICE = _pick_autocast_takes_device()


def is_compiling() -> bool:
    """Whether the caller is being traced by ``torch.compile`` (Dynamo).

    ``torch.compiler.is_compiling`` from torch 2.3, ``torch._dynamo``'s
    before; both fold to True while Dynamo traces.
    """
    return _is_compiling()


def autocast_enabled(device_type: str) -> bool:
    """Whether ``torch.autocast`` is on for ``device_type`` ('cpu', 'cuda').

    torch < 2.4 has one function per device (``is_autocast_enabled()`` is
    CUDA's); a device without one has no autocast.
    """
    if _AUTOCAST_TAKES_DEVICE:
        return torch.is_autocast_enabled(device_type)
    if device_type == 'cuda':
        return torch.is_autocast_enabled()
    fn = getattr(torch, f'is_autocast_{device_type}_enabled', None)
    return bool(fn()) if fn is not None else False


@contextmanager
def safe_globals(objs: Iterable) -> Iterator[None]:
    """Allow ``objs`` (classes, functions) in ``weights_only`` loads inside
    this block only.

    torch 2.4 has only the process-wide ``add_safe_globals`` (undone on exit);
    torch 2.1-2.3 have no allow-list, but default to ``weights_only=False``.
    """
    objs = list(objs)
    serialization = torch.serialization
    scoped = getattr(serialization, 'safe_globals', None)
    if scoped is not None:
        with scoped(objs):
            yield
        return
    add = getattr(serialization, 'add_safe_globals', None)
    if add is None:
        yield
        return
    previous = list(serialization.get_safe_globals())
    add(objs)
    try:
        yield
    finally:
        serialization.clear_safe_globals()
        add(previous)


def _numpy_scalar_globals() -> list:
    """Dtypes and scalar constructor a pickled numpy scalar needs, also under
    numpy 1's module name (``numpy.core``; numpy 2: ``numpy._core``)."""
    import numpy as np
    scalar = (getattr(np, '_core', None) or np.core).multiarray.scalar
    return [np.dtype, scalar, (scalar, 'numpy.core.multiarray.scalar'),
            *{type(np.dtype(c)) for c in '?bhilqBHILQefdgFDG'}]


def allow_numpy_scalars() -> None:
    """Add numpy scalars (data, no code) to torch's ``weights_only``
    allow-list.

    Upstream: mmseg 0.30 saved the best mIoU as ``numpy.float64`` in
    ``meta['hook_msgs']``, so torch >= 2.6 refuses the authors' ADE20K files
    in ``mmseg.apis.init_model`` / ``MMSegInferencer``."""
    add = getattr(torch.serialization, 'add_safe_globals', None)
    if add is None:
        return
    objs = _numpy_scalar_globals()
    try:
        add(objs)
    except TypeError:  # torch 2.4: no (object, name) pairs
        add([o for o in objs if not isinstance(o, tuple)])


@contextmanager
def trusted_local_checkpoints() -> Iterator[None]:
    """Let MMEngine read its own training checkpoints under torch >= 2.6.

    Upstream: mmengine 0.10.7's ``load_from_local`` uses torch's default
    ``weights_only=True``, and its ``message_hub`` HistoryBuffers unpickle via
    ``builtins.getattr`` (no safe allow-list), so ``--resume`` fails. Inside,
    a failed safe load retries with ``weights_only=False`` and logs it; only
    for checkpoints the user trusts. ``torch.load`` itself is not changed.
    """
    original = CheckpointLoader._get_checkpoint_loader('')

    def load_from_local_trusted(filename: str, map_location=None):
        filename = osp.expanduser(filename)
        if not osp.isfile(filename):
            raise FileNotFoundError(f'Checkpoint {filename} does not exist.')
        try:
            try:
                return torch.load(filename, map_location=map_location,
                                  weights_only=True)
            except pickle.UnpicklingError:
                print_log(
                    f'{filename} holds MMEngine training state '
                    f"(HistoryBuffer) that torch's weights_only loader "
                    f'rejects; loading it with weights_only=False. Load '
                    f'only checkpoints you trust.',
                    logger='current')
                return torch.load(filename, map_location=map_location,
                                  weights_only=False)
        except (RuntimeError, EOFError, pickle.UnpicklingError) as e:
            raise ValueError(
                f'{filename} could not be read as a checkpoint (truncated, '
                f'e.g. by a run killed while saving, or not a checkpoint): '
                f'{type(e).__name__}: {str(e).splitlines()[0]}') from None

    CheckpointLoader.register_scheme('', load_from_local_trusted, force=True)
    try:
        yield
    finally:
        CheckpointLoader.register_scheme('', original, force=True)


def _sync_bn_to_bn(cfg: Any) -> int:
    """Replace every ``type='SyncBN'`` in a (nested) config; return count."""
    if isinstance(cfg, (list, tuple)):
        return sum(_sync_bn_to_bn(value) for value in cfg)
    if not isinstance(cfg, dict):
        return 0
    count = int(cfg.get('type') == 'SyncBN')
    if count:
        cfg['type'] = 'BN'
    return count + sum(_sync_bn_to_bn(value) for value in cfg.values())


@contextmanager
def cpu_distributed(cfg: Config) -> Iterator[None]:
    """Let ``--launcher pytorch`` (tools/dist_train.sh) run on CPU, with gloo.

    Upstream, CPU-only torch: mmengine 0.10.7 calls ``torch.cuda.set_device``
    and uses nccl, its DDP wrapper passes ``device_ids=[LOCAL_RANK]``, and
    torch's SyncBatchNorm refuses CPU tensors. Here gloo is initialised first,
    ``device_ids=None``, and SyncBN becomes BN (logged). No-op with CUDA or
    without a launcher.

    When the block ends normally the process exits there, after a barrier,
    with the visualizer's backends and the log files closed: a gloo worker
    thread drops the last collective's tensors after the caller has moved
    on, and where that falls into interpreter finalization it aborts the
    process ("terminate called without an active exception", SIGABRT, after
    the results are out; pytorch/pytorch#179291). DDP keeps the group and
    its threads alive to the end, so destroying the group does not help.
    """
    if cfg.get('launcher', 'none') == 'none' or torch.cuda.is_available():
        yield
        return
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo')
    wrapper = cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel', broadcast_buffers=False)
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper
    replaced = _sync_bn_to_bn(cfg.model)
    if dist.get_rank() == 0:
        note = (f"; {replaced} SyncBN config(s) use BN (per-process "
                f"statistics), as torch's SyncBatchNorm needs GPUs; on GPUs "
                f"the configs' SyncBN is used unchanged" if replaced else '')
        print_log(f'Distributed on CPU (gloo), {dist.get_world_size()} '
                  f'processes{note}.', logger='current')
    yield
    dist.barrier()
    Visualizer.get_current_instance().close()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
