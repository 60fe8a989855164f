"""The authors' TransXNet checkpoint keys -> ours, and checked loading.

The authors' model keeps stages and downsamplers in one ``network`` list
(positions 0, 2, 4, 6 are stages; 1, 3, 5 downsamplers) and the relative
position biases in a top-level list.  Ours has ``downsample_layers``,
``stages.i.blocks`` and ``stages.i.relative_pos_bias``.  ``BLOCK_KEYS`` below
is the one place where the names inside a block are mapped.
"""
import argparse
import os.path as osp
import pickle
import re
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

import torch
from mmengine.runner.checkpoint import CheckpointLoader
from torch import Tensor, nn

# Authors' name inside a block -> ours (prefix match, first match wins).
BLOCK_KEYS: List[Tuple[str, str]] = [
    ('pos_embed.', 'dpe.'),
    ('norm1.', 'norm1.'),
    ('norm2.', 'norm2.'),
    ('token_mixer.local_unit.proj.0.conv.', 'mixer.idconv.proj.0.'),
    ('token_mixer.local_unit.proj.0.bn.', 'mixer.idconv.proj.1.'),
    ('token_mixer.local_unit.proj.1.', 'mixer.idconv.proj.3.'),
    ('token_mixer.local_unit.', 'mixer.idconv.'),
    ('token_mixer.global_unit.sr.0.conv.', 'mixer.osra.sr.0.'),
    ('token_mixer.global_unit.sr.0.bn.', 'mixer.osra.sr.1.'),
    ('token_mixer.global_unit.sr.1.conv.', 'mixer.osra.sr.3.'),
    ('token_mixer.global_unit.sr.1.bn.', 'mixer.osra.sr.4.'),
    ('token_mixer.global_unit.', 'mixer.osra.'),
    ('token_mixer.proj.', 'mixer.ste.'),
    ('mlp.dwconv.proj.', 'ffn.msdw.convs.'),
    ('mlp.norm.', 'ffn.bn.'),
    ('mlp.', 'ffn.'),
    ('layer_scale_1.', 'ls1.'),
    ('layer_scale_2.', 'ls2.'),
]
# The authors' ImageNet classifier: GroupNorm(1) -> avg pool -> 1x1 conv.
# It maps onto our last output norm and an mmpretrain LinearClsHead.
HEAD_KEYS: List[Tuple[str, str]] = [
    ('classifier.0.', 'backbone.norm3.'),
    ('classifier.2.', 'head.fc.'),
]

_BLOCK_RE = re.compile(r'network\.(\d+)\.(\d+)\.(.+)')
_DOWN_RE = re.compile(r'network\.(\d+)\.proj\.(conv|bn)\.(.+)')
_STEM_RE = re.compile(r'patch_embed\.proj\.(conv|bn)\.(.+)')
_BIAS_RE = re.compile(r'relative_pos_enc\.(\d+)')


def is_official(state_dict: Dict[str, Tensor]) -> bool:
    """Whether the keys are the authors' (``network.*``, ``patch_embed.*``)."""
    return any(k.startswith(('network.', 'patch_embed.')) for k in state_dict)


def _rename_block(rest: str) -> Optional[str]:
    for old, new in BLOCK_KEYS:
        if rest.startswith(old):
            return new + rest[len(old):]
    return None


def convert_key(key: str) -> Optional[str]:
    """Our backbone name for an authors' backbone key; None for other keys."""
    m = _STEM_RE.fullmatch(key)
    if m:
        return f'downsample_layers.0.{m[1]}.{m[2]}'
    m = _DOWN_RE.fullmatch(key)
    if m and int(m[1]) % 2 == 1:
        return f'downsample_layers.{(int(m[1]) + 1) // 2}.{m[2]}.{m[3]}'
    m = _BIAS_RE.fullmatch(key)
    if m:
        return f'stages.{m[1]}.relative_pos_bias'
    m = _BLOCK_RE.fullmatch(key)
    if m and int(m[1]) % 2 == 0:
        rest = _rename_block(m[3])
        if rest is not None:
            return f'stages.{int(m[1]) // 2}.blocks.{m[2]}.{rest}'
    return None


def _convert_value(new_key: str, value: Tensor) -> Tensor:
    # Layer scales are (C, 1, 1, 1) depthwise-conv weights in the authors'
    # model and (C,) vectors in ours; the classifier is a 1x1 conv there and
    # a Linear in mmpretrain.
    if new_key == 'head.fc.weight':
        return value.flatten(1)
    if re.search(r'\.ls[12]\.weight$', new_key):
        return value.flatten()
    return value


def convert_official(
        state_dict: Dict[str, Tensor],
        with_head: bool = False) -> Tuple['OrderedDict[str, Tensor]', List[str]]:
    """Rename an authors' state dict to ours.

    Returns the converted dict and the authors' keys left out. With
    ``with_head`` the result is an mmpretrain ImageClassifier state dict
    (``backbone.*`` and ``head.fc.*``); otherwise backbone keys only, and the
    classifier is left out as the authors' detection and segmentation code does.
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
            out[new] = _convert_value(new, value)
    return out, left_out


def to_official(
    state_dict: Dict[str, Tensor]
) -> Tuple['OrderedDict[str, Tensor]', 'OrderedDict[str, Tensor]']:
    """Our backbone state dict in the authors' names (the inverse of
    :func:`convert_official`, from the same tables), and the output norms
    (``norm{i}.*``), which the authors' ImageNet model does not have."""
    out: 'OrderedDict[str, Tensor]' = OrderedDict()
    norms: 'OrderedDict[str, Tensor]' = OrderedDict()
    for key, value in state_dict.items():
        m = re.fullmatch(r'downsample_layers\.(\d+)\.(.+)', key)
        if m:
            i = int(m[1])
            new = ('patch_embed.proj.' if i == 0 else
                   f'network.{2 * i - 1}.proj.') + m[2]
        elif re.fullmatch(r'norm\d+\.(weight|bias)', key):
            norms[key] = value
            continue
        else:
            m = re.fullmatch(r'stages\.(\d+)\.relative_pos_bias', key)
            if m:
                new = f'relative_pos_enc.{m[1]}'
            else:
                m = re.fullmatch(r'stages\.(\d+)\.blocks\.(\d+)\.(.+)', key)
                if not m:
                    raise KeyError(f'{key} is not a TransXNet backbone key')
                # the most specific (longest) of our prefixes that matches
                matches = [(len(ours), old + m[3][len(ours):])
                           for old, ours in BLOCK_KEYS
                           if m[3].startswith(ours)]
                if not matches:
                    raise KeyError(f'{key} is not a TransXNet backbone key')
                rest = max(matches)[1]
                new = f'network.{2 * int(m[1])}.{m[2]}.{rest}'
                if re.fullmatch(r'layer_scale_[12]\.weight', rest):
                    value = value.reshape(-1, 1, 1, 1)
        out[new] = value
    return out, norms


def describe_arch(state_dict: Dict[str, Tensor]) -> Tuple[Optional[str], str]:
    """Guess the variant of an (our-named) backbone state dict: the
    ``arch_settings`` name or None, and a short description."""
    from .transxnet import TransXNet
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
    for name, arch in TransXNet.arch_settings.items():
        if len(name) == 1 and arch['channels'] == channels \
                and arch['depths'] == depths:
            return name, desc
    return None, desc


def read_checkpoint(path: str) -> dict:
    """Load a checkpoint file with torch's safe ``weights_only`` loading.

    timm-trained checkpoints (the authors') also hold an ``argparse.Namespace``
    of training arguments; it is allowed for this one load only.
    """
    if '://' not in path and not osp.isfile(path):
        raise FileNotFoundError(
            f'TransXNet checkpoint file {path!r} does not exist. Download the '
            f"authors' ImageNet weights (transx-t/s/b.pth.tar) and set its path "
            f"in the backbone's init_cfg.checkpoint (see README.md).")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
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


def official_to_mm_checkpoint(src: str,
                              dst: str,
                              with_head: bool = True) -> Optional[str]:
    """Write the authors' checkpoint ``src`` in our key names to ``dst``.

    For tools that hand a checkpoint to MMEngine's ``load_checkpoint``
    (``tools/test.py``, ``tools/image_demo.py``), which cannot rename keys.
    ``dst`` gets the format of ``tools/model_converters/transxnet_to_mm.py``:
    ``state_dict`` with an mmpretrain ImageClassifier's ``backbone.*`` and
    ``head.fc.*`` (backbone only without ``with_head``) and ``meta`` (source
    file name, arch). Returns a one-line summary for the log, or None, writing
    nothing, when ``src`` does not hold the authors' keys (ours, or an
    MMEngine training checkpoint, which torch's safe loading rejects).
    """
    try:
        state_dict = extract_state_dict(read_checkpoint(src))
    except ValueError:
        return None
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

    ``path`` may hold the authors' keys (under 'state_dict', 'model' or bare)
    or ours (as written by ``tools/model_converters/transxnet_to_mm.py``,
    with a 'backbone.' prefix or without; ``prefix`` selects a sub-module of a
    full-model checkpoint). Output norms absent from the file are new and
    initialised to weight 1, bias 0, as in the authors' dense models.
    """
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
            state_dict = sub

    own = model.state_dict()
    ours = model.__class__.__name__ + '-' + _arch_name(model)
    guess, desc = describe_arch(state_dict)
    mismatched = [
        k for k, v in state_dict.items()
        if k in own and tuple(v.shape) != tuple(own[k].shape)
    ]
    if mismatched or (guess is not None and guess != _arch_name(model).lower()):
        looks = f'TransXNet-{guess.upper()}' if guess else 'another arch'
        raise ValueError(
            f'Checkpoint {path!r} looks like {looks} ({desc}) but the model is '
            f'{ours}: set the backbone arch to match the checkpoint or use the '
            f'checkpoint of {ours}. First mismatched keys: {mismatched[:5]}')
    is_out_norm = re.compile(r'norm\d+\.').match
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


def _arch_name(model: nn.Module) -> str:
    from .transxnet import TransXNet
    arch = getattr(model, 'arch', None)
    for name, setting in TransXNet.arch_settings.items():
        if len(name) == 1 and setting == arch:
            return name.upper()
    return 'custom'
