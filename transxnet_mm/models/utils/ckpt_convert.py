"""The authors' TransXNet checkpoint keys -> ours, and checked loading.

Only prefixes differ: the authors' ``network`` list holds stages (even
positions) and downsamplers (odd). ``PREFIXES`` maps them, both ways.
"""
import argparse
import os
import os.path as osp
import pickle
import re
from collections import OrderedDict
from functools import lru_cache
from typing import Callable, Dict, List, Optional, Tuple

import torch
from mmengine.registry import MODELS
from mmengine.runner.checkpoint import CheckpointLoader
from torch import Tensor, nn

from ...utils.compat import safe_globals

# (authors' pattern, ours, index authors -> ours, inverse); {i} theirs, {j} ours
PREFIXES: List[Tuple[str, str, Callable[[int], int], Callable[[int], int]]] = [
    ('patch_embed.proj.', 'downsample_layers.0.', None, None),
    ('network.{i}.proj.', 'downsample_layers.{j}.', lambda i: (i + 1) // 2,
     lambda j: 2 * j - 1),
    ('relative_pos_enc.{i}', 'stages.{j}.relative_pos_bias', lambda i: i,
     lambda j: j),
    ('network.{i}.', 'stages.{j}.blocks.', lambda i: i // 2,
     lambda j: 2 * j),
]
# The authors' classifier (GroupNorm, pool, 1x1 conv) -> our norm3 + LinearClsHead
HEAD_KEYS: List[Tuple[str, str]] = [
    ('classifier.0.', 'backbone.norm3.'),
    ('classifier.2.', 'head.fc.'),
]


@lru_cache(maxsize=None)
def _pattern(template: str, name: str) -> 're.Pattern':
    return re.compile(re.escape(template).replace(
        re.escape('{' + name + '}'), r'(\d+)') + r'(.*)', re.S)


def _rename(key: str, inverse: bool = False) -> Optional[str]:
    for theirs, ours, to_ours, to_theirs in PREFIXES:
        src, dst, index = (ours, theirs, to_theirs) if inverse else \
            (theirs, ours, to_ours)
        m = _pattern(src, 'j' if inverse else 'i').fullmatch(key)
        if not m:
            continue
        if index is None:
            return dst + m[1]
        n = int(m[1])
        if not inverse and src.startswith('network.') and \
                (n % 2 == 1) != src.endswith('proj.'):
            continue
        out = dst.replace('{i}' if inverse else '{j}', str(index(n)))
        return out + m[2]
    return None


def convert_key(key: str) -> Optional[str]:
    """Our backbone name for an authors' backbone key; None for other keys."""
    return _rename(key)


def is_official(state_dict: Dict[str, Tensor]) -> bool:
    """Whether the keys are the authors' (``network.*``, ``patch_embed.*``)."""
    return any(k.startswith(('network.', 'patch_embed.')) for k in state_dict)


def is_authors_classifier(state_dict: Dict[str, Tensor]) -> bool:
    """Whether the keys are the authors' ImageNet classifier (``transx-*``)."""
    return is_official(state_dict) and any(
        k.startswith(head) for head, _ in HEAD_KEYS for k in state_dict)


class CheckpointMismatch(ValueError):
    """A checkpoint that does not fit the model it is loaded into."""


def _authors_dense_norm(key: str) -> Optional[str]:
    """The authors' dense ``norm0/2/4/6`` (``network`` positions) -> ``norm0..3``."""
    m = re.fullmatch(r'norm(\d+)\.(.*)', key, re.S)
    if m and int(m[1]) % 2 == 0:
        return f'norm{int(m[1]) // 2}.{m[2]}'
    return None


def rename_authors_keys(state_dict: Dict[str, Tensor],
                        prefix: str = '') -> int:
    """Rename, in place, the authors' backbone keys under ``prefix`` to ours;
    returns how many were renamed."""
    keys = [k for k in state_dict if k.startswith(prefix)]
    if not is_official({k[len(prefix):]: None for k in keys}):
        return 0
    renamed = 0
    for key in keys:
        local = key[len(prefix):]
        new = convert_key(local) or _authors_dense_norm(local)
        if new is not None:
            state_dict[prefix + new] = state_dict.pop(key)
            renamed += 1
    return renamed


def check_variant(model: nn.Module, local: Dict[str, Tensor],
                  source: str = 'The checkpoint', prefix: str = '') -> None:
    """Raise :class:`CheckpointMismatch`, naming the fix, when ``local``
    (our names) holds another variant or backbone than ``model``."""
    own = model.state_dict()
    ours = 'TransXNet-' + arch_name(model)
    guess, desc = describe_arch(local)
    mismatched = [k for k, v in local.items()
                  if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if mismatched or (guess is not None and guess != arch_name(model).lower()):
        holds = f'TransXNet-{guess.upper()}' if guess else 'another backbone'
        fix = (f"use the config of TransXNet-{guess.upper()} (or set "
               f"model.backbone.arch='{guess}')" if guess else
               f'use the checkpoint of a {ours} model')
        raise CheckpointMismatch(
            f'{source} holds {holds} ({desc}) but the model\'s backbone is '
            f'{ours}: {fix}. First mismatched keys: '
            f'{[prefix + k for k in mismatched[:3]]}')


def convert_official(
        state_dict: Dict[str, Tensor],
        with_head: bool = False) -> Tuple['OrderedDict[str, Tensor]', List[str]]:
    """Rename an authors' state dict to ours; returns it and the keys left out.

    With ``with_head``: an mmpretrain ImageClassifier's (``backbone.*``,
    ``head.fc.*``); otherwise backbone keys only.
    """
    out: 'OrderedDict[str, Tensor]' = OrderedDict()
    left_out = []
    for key, value in state_dict.items():
        new = convert_key(key)
        if new is not None:
            new = 'backbone.' + new if with_head else new
        elif with_head:
            new = next((n + key[len(o):]
                        for o, n in HEAD_KEYS if key.startswith(o)), None)
        if new is None:
            left_out.append(key)
        else:
            # 1x1 conv -> Linear
            out[new] = value.flatten(1) if new == 'head.fc.weight' else value
    return out, left_out


def to_official(
    state_dict: Dict[str, Tensor]
) -> Tuple['OrderedDict[str, Tensor]', 'OrderedDict[str, Tensor]']:
    """Our backbone state dict in the authors' names, and the output norms
    apart (the authors' ImageNet model has none)."""
    out: 'OrderedDict[str, Tensor]' = OrderedDict()
    norms: 'OrderedDict[str, Tensor]' = OrderedDict()
    for key, value in state_dict.items():
        if re.fullmatch(r'norm\d+\.(weight|bias)', key):
            norms[key] = value
            continue
        new = _rename(key, inverse=True)
        if new is None:
            raise KeyError(f'{key} is not a TransXNet backbone key')
        out[new] = value
    return out, norms


def describe_arch(state_dict: Dict[str, Tensor]) -> Tuple[Optional[str], str]:
    """The ``arch_settings`` name (or None) of an our-named backbone state
    dict, and a short description."""
    channels, depths = [], []
    for i in range(4):
        w = state_dict.get(f'downsample_layers.{i}.conv.weight')
        channels.append(int(w.shape[0]) if w is not None else None)
        blocks = {
            int(k.split('.')[3])
            for k in state_dict if k.startswith(f'stages.{i}.blocks.')
        }
        depths.append(max(blocks) + 1 if blocks else 0)
    desc = f'depths {depths}, channels {channels}'
    for name, arch in _arch_settings().items():
        if len(name) == 1 and arch['channels'] == channels \
                and arch['depths'] == depths:
            return name, desc
    return None, desc


def read_checkpoint(path: str) -> dict:
    """Load a checkpoint file with torch's safe ``weights_only`` loading.

    The authors' timm-trained files hold an ``argparse.Namespace`` of training
    arguments, allowed for this load only.
    """
    if '://' not in path and not osp.isfile(path):
        raise FileNotFoundError(
            f'TransXNet checkpoint file {path!r} does not exist. Download the '
            f"authors' ImageNet weights (transx-t/s/b.pth.tar) and set its path "
            f"in the backbone's init_cfg.checkpoint (see docs/get_started.md).")
    try:
        with safe_globals([argparse.Namespace]):
            ckpt = CheckpointLoader.load_checkpoint(path, map_location='cpu')
    except (RuntimeError, EOFError, ValueError, OSError,
            pickle.UnpicklingError) as e:
        raise ValueError(
            f'{path!r} could not be read as a PyTorch checkpoint (truncated '
            f'or not a checkpoint?): {type(e).__name__}: {e}') from None
    if not isinstance(ckpt, dict):
        raise ValueError(f'{path!r} holds a {type(ckpt).__name__}, not a '
                         f'checkpoint dict')
    return ckpt


def extract_state_dict(ckpt: dict) -> Dict[str, Tensor]:
    """The weights of a checkpoint: under 'state_dict', 'model', or bare."""
    for key in ('state_dict', 'model'):
        if isinstance(ckpt.get(key), dict):
            return ckpt[key]
    return ckpt


def dataset_meta_of(meta: dict) -> Optional[dict]:
    """A checkpoint meta's classes (and palette) as MMEngine's ``dataset_meta``
    (mmdet 2 / mmseg 0.x keep ``CLASSES``, ``PALETTE``)."""
    if meta.get('dataset_meta'):
        return dict(meta['dataset_meta'])
    if meta.get('CLASSES') is None:
        return None
    out = dict(classes=tuple(meta['CLASSES']))
    if meta.get('PALETTE') is not None:
        out['palette'] = [tuple(c) for c in meta['PALETTE']]
    return out


def official_to_mm_checkpoint(src: str,
                              dst: str,
                              with_head: bool = True) -> Optional[str]:
    """Write the authors' checkpoint ``src`` (ImageNet classifier, or mmdet
    2.28 / mmseg 0.30 model) in our key names to ``dst``.

    Returns a one-line summary, or None, writing nothing, when ``src`` does
    not hold the authors' keys.
    """
    try:
        ckpt = read_checkpoint(src)
    except ValueError:
        return None
    state_dict = extract_state_dict(ckpt)
    renamed = rename_authors_keys(state_dict, 'backbone.')
    if renamed:  # their mmdet 2 / mmseg 0.x model
        meta = ckpt.get('meta') or {}
        made = {k: v for k, v in meta.items() if k.endswith('_version')}
        os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
        torch.save(dict(state_dict=state_dict, meta=dict(
            source=osp.basename(src), dataset_meta=dataset_meta_of(meta),
            **made)), dst)
        arch, desc = describe_arch({k[len('backbone.'):]: v
                                    for k, v in state_dict.items()
                                    if k.startswith('backbone.')})
        source = ', '.join(made.values()) or 'mmdet 2 / mmseg 0.x'
        return (f'a whole model ({source}) with TransXNet-'
                f'{(arch or "custom").upper()} ({desc}), {renamed} backbone '
                f'keys renamed, {len(state_dict)} tensors')
    if not is_official(state_dict):
        return None
    converted, left_out = convert_official(state_dict, with_head=with_head)
    if with_head and left_out:
        raise ValueError(f'{src!r} holds keys that are not TransXNet '
                         f'weights: {left_out[:5]}')
    if not with_head:
        converted = OrderedDict(
            ('backbone.' + k, v) for k, v in converted.items())
    arch, desc = describe_arch({
        k[len('backbone.'):]: v
        for k, v in converted.items() if k.startswith('backbone.')
    })
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    torch.save(
        dict(state_dict=converted,
             meta=dict(source=osp.basename(src), arch=arch)), dst)
    return (f'TransXNet-{(arch or "custom").upper()} ({desc}), '
            f'{len(converted)} tensors'
            f'{"" if with_head else ", backbone only"}')


def load_pretrained(model: nn.Module,
                    path: str,
                    prefix: Optional[str] = None,
                    logger=None) -> None:
    """Load every backbone weight of ``model`` from ``path``, or fail clearly.

    ``path`` holds the authors' keys or ours; ``prefix`` selects a sub-module
    of a full-model checkpoint. Output norms absent from the file start at
    weight 1, bias 0, as in the authors' dense models.
    """
    is_out_norm = re.compile(r'norm\d+\.').match
    state_dict = extract_state_dict(read_checkpoint(path))
    fmt = "authors'" if is_official(state_dict) else 'mm'
    if fmt == "authors'":
        state_dict, left_out = convert_official(state_dict)
    else:
        if prefix is None and any(k.startswith('backbone.') for k in state_dict):
            prefix = 'backbone.'
        left_out = []
        if prefix:
            if not prefix.endswith('.'):
                prefix += '.'
            sub = {k[len(prefix):]: v for k, v in state_dict.items()
                   if k.startswith(prefix)}
            if not sub:
                raise ValueError(f'No key of checkpoint {path!r} starts with '
                                 f'prefix {prefix!r}.')
            left_out = [k for k in state_dict if not k.startswith(prefix)]
            if any(k.startswith('head.') for k in left_out):
                # a classifier's last norm precedes its pool; the authors'
                # dense models start their output norms fresh too
                left_out += [prefix + k for k in sub if is_out_norm(k)]
                sub = {k: v for k, v in sub.items() if not is_out_norm(k)}
            state_dict = sub

    own = model.state_dict()
    ours = model.__class__.__name__ + '-' + arch_name(model)
    _, desc = describe_arch(state_dict)
    check_variant(model, state_dict, source=f'Checkpoint {path!r}')
    missing = [k for k in own if k not in state_dict and not is_out_norm(k)]
    if missing:
        raise ValueError(
            f'Checkpoint {path!r} ({fmt} format, {desc}) lacks {len(missing)} '
            f'of the {len(own)} weights of {ours}, e.g. {missing[:5]}; the file '
            f'is truncated or not a TransXNet backbone checkpoint.')
    unexpected = [k for k in state_dict if k not in own]
    if unexpected:
        raise ValueError(
            f'Checkpoint {path!r} has {len(unexpected)} weights that {ours} '
            f'does not, e.g. {unexpected[:5]}; for a full-model checkpoint set '
            f"init_cfg.prefix (e.g. 'backbone.').")
    new_norms = sorted({k.split('.')[0] for k in own if k not in state_dict})
    for name in new_norms:
        norm = getattr(model, name)
        nn.init.ones_(norm.weight)
        nn.init.zeros_(norm.bias)
    model.load_state_dict(state_dict, strict=False)
    if logger is not None:
        groups = ', '.join(sorted({k.split('.')[0] for k in left_out}))
        logger.info(
            f'Loaded {len(state_dict)} weights of {ours} from {path} ({fmt} '
            f'format); left out {len(left_out)} keys of the file ({groups}); '
            f'new output norms initialised to weight 1, bias 0: '
            f'{", ".join(new_norms) or "none"}.')


def arch_name(model: nn.Module) -> str:
    arch = getattr(model, 'arch', None)
    for name, setting in _arch_settings().items():
        if len(name) == 1 and setting == arch:
            return name.upper()
    return 'custom'


def _arch_settings() -> Dict[str, dict]:
    """The backbone's ``arch_settings``, from the registry (importing the model
    would be circular)."""
    return MODELS.get('TransXNet').arch_settings
