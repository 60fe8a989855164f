"""Workarounds for upstream incompatibilities of the pinned stack.

Each one says which upstream behaviour it covers. Nothing here runs on
``import transxnet_mm``: our tools opt in where they need it.
"""
import os.path as osp
import pickle
from contextlib import contextmanager
from typing import Any, Iterator

import torch
import torch.distributed as dist
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.runner.checkpoint import CheckpointLoader


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
