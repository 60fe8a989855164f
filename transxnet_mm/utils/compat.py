"""Workarounds for the pinned stack, each with the upstream behaviour it covers.

- torch versions: transxnet_mm supports torch 2.1 (the torch that mmcv 2.1.0
  has prebuilt CUDA wheels for) through 2.13. Each function of the first part
  calls the newer API when the installed torch has it and an equivalent of
  torch 2.1 otherwise, so the rest of the package never tests torch versions
  itself (tests/test_torch_compat.py hides the newer APIs to check the
  fallbacks). APIs torch 2.1 already has need nothing here:
  ``F.scaled_dot_product_attention(scale=...)``, ``Tensor.mT``,
  ``torch.load(weights_only=...)``, ``torch.ops.aten.convolution_backward``,
  ``torch.ops.aten.gelu_``, ``torch.compile``, ``torch.jit.is_tracing``.
- checkpoints under torch >= 2.6's ``weights_only`` loading: numpy scalars
  of mmseg 0.30 files (on import), MMEngine's own training state (our tools
  opt in: :func:`trusted_local_checkpoints`).
- MMEngine's distributed launch on a CPU-only torch
  (:func:`setup_cpu_distributed`, our tools opt in).
"""
import os.path as osp
import pickle
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator

import torch
import torch.distributed as dist
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.runner.checkpoint import CheckpointLoader

__all__ = ['is_compiling', 'autocast_enabled', 'autocast_dtype',
           'safe_globals', 'load_defaults_to_weights_only',
           'allow_numpy_scalars', 'trusted_local_checkpoints',
           'setup_cpu_distributed']


def _dynamo_is_compiling() -> bool:
    # torch._dynamo is a lazy submodule of torch 2.0-2.2: imported on first
    # use, not by ``import transxnet_mm``.
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

    ``torch.compiler.is_compiling`` exists from torch 2.3; before, the same
    flag is ``torch._dynamo.is_compiling`` (torch 2.0-2.2). Both are constant
    folded to True while Dynamo traces, so code behind them is compiled out.
    """
    return _is_compiling()


def autocast_enabled(device_type: str) -> bool:
    """Whether ``torch.autocast`` is on for ``device_type`` ('cpu', 'cuda',
    ...).

    ``torch.is_autocast_enabled(device_type)`` takes the device from torch
    2.4; torch 2.1-2.3 have one function per device instead:
    ``torch.is_autocast_enabled()`` for CUDA, ``torch.is_autocast_cpu_enabled()``
    for CPU and ``torch.is_autocast_<device>_enabled()`` for the others (a
    device without one has no autocast: False).
    """
    if _AUTOCAST_TAKES_DEVICE:
        return torch.is_autocast_enabled(device_type)
    if device_type == 'cuda':
        return torch.is_autocast_enabled()
    fn = getattr(torch, f'is_autocast_{device_type}_enabled', None)
    return bool(fn()) if fn is not None else False


def autocast_dtype(device_type: str) -> torch.dtype:
    """The dtype ``torch.autocast`` casts to on ``device_type`` (set or
    default, whether or not autocast is on).

    ``torch.get_autocast_dtype(device_type)`` exists from torch 2.4; torch
    2.1-2.3 have ``torch.get_autocast_gpu_dtype()`` for CUDA,
    ``torch.get_autocast_cpu_dtype()`` for CPU and
    ``torch.get_autocast_<device>_dtype()`` for the others.
    """
    if hasattr(torch, 'get_autocast_dtype'):
        return torch.get_autocast_dtype(device_type)
    name = 'gpu' if device_type == 'cuda' else device_type
    fn = getattr(torch, f'get_autocast_{name}_dtype', None)
    if fn is None:
        raise ValueError(f'torch {torch.__version__} has no autocast for '
                         f'device type {device_type!r}')
    return fn()


def load_defaults_to_weights_only() -> bool:
    """Whether a bare ``torch.load(path)`` refuses pickled objects (torch >=
    2.6 defaults to ``weights_only=True``; torch 2.1-2.5 to False)."""
    major, minor = (int(v) for v in torch.__version__.split('.')[:2])
    return (major, minor) >= (2, 6)


@contextmanager
def safe_globals(objs: Iterable) -> Iterator[None]:
    """Allow ``objs`` (classes, functions) in ``weights_only`` loads inside
    this block only.

    - torch >= 2.5: ``torch.serialization.safe_globals``.
    - torch 2.4: ``add_safe_globals`` (process-wide); the previous allow-list
      is put back on exit.
    - torch 2.1-2.3 have no allow-list. Nothing is needed there for the loads
      this package makes (``torch.load`` without ``weights_only``, e.g.
      MMEngine's ``CheckpointLoader``): their default is ``weights_only=False``,
      which unpickles these objects anyway. An explicit
      ``torch.load(weights_only=True)`` still refuses them there.
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
    """What unpickling a numpy scalar needs: its dtype and the scalar
    constructor, also under numpy 1's module name (files written with numpy
    1 name ``numpy.core``, numpy 2 ``numpy._core``)."""
    import numpy as np
    scalar = (getattr(np, '_core', None) or np.core).multiarray.scalar
    return [np.dtype, scalar, (scalar, 'numpy.core.multiarray.scalar'),
            *{type(np.dtype(c)) for c in '?bhilqBHILQefdgFDG'}]


def allow_numpy_scalars() -> None:
    """Let ``weights_only`` loads (torch >= 2.6's default) read numpy
    scalars, which are data, no code: torch's allow-list
    (``torch.serialization.add_safe_globals``) gains numpy's scalar
    constructor and dtypes; everything else it refused stays refused.

    Upstream: mmseg 0.30 kept the best mIoU as a ``numpy.float64`` in
    ``meta['hook_msgs']``, so torch >= 2.6 refuses the authors' ADE20K
    files in ``mmseg.apis.init_model`` / ``MMSegInferencer`` (MMEngine's
    ``load_checkpoint`` relies on the default). torch 2.1-2.5 load them
    anyway (no allow-list, or ``weights_only=False`` by default)."""
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

    Upstream: torch 2.6 made ``torch.load(weights_only=True)`` the default,
    and mmengine 0.10.7's ``load_from_local`` relies on the default. Its
    checkpoints hold ``message_hub`` HistoryBuffers whose pickled state calls
    ``builtins.getattr``, which no allow-list can admit safely, so ``--resume``,
    ``tools/test.py`` and ``init_detector`` fail with UnpicklingError.

    Inside this context MMEngine's local-file loader first tries the safe load
    and, only if that fails, loads with ``weights_only=False`` and says so:
    meant for the checkpoints a user's own runs wrote and hands to our tools.
    The original loader is restored on exit; ``torch.load`` itself is never
    changed.
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
    count = 0
    if isinstance(cfg, dict):
        if cfg.get('type') == 'SyncBN':
            cfg['type'] = 'BN'
            count += 1
        for value in cfg.values():
            count += _sync_bn_to_bn(value)
    elif isinstance(cfg, (list, tuple)):
        for value in cfg:
            count += _sync_bn_to_bn(value)
    return count


def setup_cpu_distributed(cfg: Config) -> None:
    """Let ``--launcher pytorch`` (tools/dist_train.sh) run on CPU, with gloo.

    Upstream, with a CPU-only torch: mmengine 0.10.7's ``_init_dist_pytorch``
    calls ``torch.cuda.set_device`` (AttributeError) and initialises the
    config's backend (nccl); its runner wraps the model in
    DistributedDataParallel with ``device_ids=[LOCAL_RANK]`` (ValueError for
    CPU modules); and torch's SyncBatchNorm refuses CPU tensors when
    distributed. Here: the gloo process group is initialised first (mmengine
    then skips its own), the wrapper gets ``device_ids=None``, and SyncBN
    becomes BN (said in the log: statistics are per process on CPU).
    Nothing changes when CUDA is available or when not distributed.
    """
    if cfg.get('launcher', 'none') == 'none' or torch.cuda.is_available():
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
