"""Argument and input checks of the TransXNet backbone: an error naming the
problem and the fix, not a shape error deep in a block."""
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from ...utils.compat import autocast_enabled


def parse_arch(arch: Union[str, dict], settings: Dict[str, dict]) -> dict:
    """An ``arch_settings`` entry by name (any case), or a full dict."""
    if isinstance(arch, str):
        key = arch.lower()
        if key not in settings:
            raise ValueError(
                f'Unknown TransXNet arch {arch!r}; choose one of '
                f'{sorted(settings)} or pass a dict with the keys '
                f'{sorted(settings["t"])}.')
        return dict(settings[key])
    if isinstance(arch, dict):
        required = set(settings['t'])
        missing = required - set(arch)
        if missing:
            raise ValueError(f'The TransXNet arch dict lacks {sorted(missing)}; '
                             f'it needs all of {sorted(required)}.')
        return dict(arch)
    raise TypeError(f'arch must be a str or a dict, got {type(arch)}')


def parse_out_indices(out_indices: Union[int, Sequence[int]],
                      num_stages: int) -> Tuple[int, ...]:
    """Sorted stage indices (negative ones counted from the end)."""
    if isinstance(out_indices, int):
        out_indices = [out_indices]
    out = []
    for i in out_indices:
        if not isinstance(i, int) or not -num_stages <= i < num_stages:
            raise ValueError(
                f'out_indices must hold stage indices from 0 to '
                f'{num_stages - 1} (or negative from the end), got '
                f'{tuple(out_indices)}')
        out.append(i % num_stages)
    if not out or len(set(out)) != len(out):
        raise ValueError(f'out_indices must be a non-empty set of stage '
                         f'indices, got {tuple(out_indices)}')
    return tuple(sorted(out))


def check_frozen_stages(frozen_stages: int, num_stages: int) -> int:
    if not (isinstance(frozen_stages, int)
            and -1 <= frozen_stages <= num_stages):
        raise ValueError(
            f'frozen_stages must be an int from -1 (nothing frozen) to '
            f'{num_stages} (everything frozen), got {frozen_stages!r}')
    return frozen_stages


# torch.compile's keyword arguments a config may set.
COMPILE_KEYS = ('backend', 'mode', 'options', 'dynamic', 'fullgraph')


def check_compile_cfg(compile_cfg: Union[None, bool, dict]) -> Optional[dict]:
    """``compile_cfg`` as ``torch.compile`` kwargs (None: eager; True:
    defaults)."""
    if compile_cfg is None or compile_cfg is False:
        return None
    if compile_cfg is True:
        compile_cfg = {}
    if not isinstance(compile_cfg, dict):
        raise TypeError(f'compile_cfg must be None, True or a dict of '
                        f'torch.compile options, got {compile_cfg!r}')
    unknown = set(compile_cfg) - set(COMPILE_KEYS)
    if unknown:
        raise ValueError(f'compile_cfg: unknown option(s) {sorted(unknown)}; '
                         f'torch.compile takes {list(COMPILE_KEYS)}, e.g. '
                         f"compile_cfg=dict(backend='inductor', mode=None)")
    return dict(compile_cfg)


def check_input(x: Tensor, in_channels: int, weight: Tensor) -> None:
    """Shapes, dtypes and devices only (cheap); ``weight`` is the stem's."""
    if not isinstance(x, Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x)
        raise ValueError(f'TransXNet takes images of shape (B, C, H, W), '
                         f'got {shape}')
    if x.shape[1] != in_channels:
        raise ValueError(
            f'TransXNet was built for {in_channels} input channels but got '
            f'{x.shape[1]}: convert the images (e.g. to RGB) or set '
            f'in_channels={x.shape[1]} in the backbone config')
    if x.device != weight.device:
        raise ValueError(
            f'The input is on {x.device} but TransXNet is on {weight.device}: '
            f'move one to the other (x.to(device) or model.to(device))')
    if x.dtype != weight.dtype and not autocast_enabled(x.device.type):
        raise ValueError(
            f"The input is {x.dtype} but TransXNet's weights are "
            f'{weight.dtype}: cast the input (x.to({weight.dtype})) or run '
            f'under torch.autocast')


def check_bn_batch(bn: nn.Module, batch: int) -> None:
    """IDConv normalises each sample's 1x1 pooled descriptor (as in the
    authors' model): a training BatchNorm needs 2 images or SyncBN."""
    if batch == 1 and bn.training and not (
            isinstance(bn, nn.SyncBatchNorm)
            and torch.distributed.is_available()
            and torch.distributed.is_initialized()):
        raise ValueError(
            'TransXNet cannot take a training step on one image per '
            "BatchNorm: IDConv normalises each sample's 1x1 pooled "
            "descriptor (as in the authors' model), which needs at least "
            '2 images. Use a batch of 2 or more per GPU (the paper: 2), '
            'SyncBN across GPUs, or eval mode for inference; for a last '
            'partial batch of one image, wrap the batch sampler in '
            "dict(type='FullBatchSampler', ...) as our configs do, or "
            'set its drop_last=True.')
