"""The one checkpoint loader of our tools: a whole model, loaded completely
or not at all, from our checkpoints or the authors' released files."""
import argparse
import logging
import os.path as osp
import re

from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.runner.checkpoint import CheckpointLoader, load_from_http
from torch import nn

from ..models.utils.ckpt_convert import (CheckpointMismatch, convert_official,
                                         dataset_meta_of, extract_state_dict,
                                         is_authors_classifier, is_official,
                                         read_checkpoint)
from ..utils.compat import safe_globals

__all__ = ['load_model_checkpoint', 'AUTHORS_RELEASE']

# The authors' release downloads.
AUTHORS_RELEASE = 'https://github.com/LMMMEng/TransXNet/releases/download/'


@CheckpointLoader.register_scheme(prefixes=AUTHORS_RELEASE)
def load_authors_release(filename: str, map_location=None) -> dict:
    """MMEngine's loader for the authors' release URLs (e.g. for mmpretrain's
    ``get_model``), allowing timm's ``argparse.Namespace``.

    An ImageNet classifier is converted here: a model's load hooks see only
    their own part of a state dict, so the backbone's hook cannot move the
    top-level classifier keys. Other files come back as released.
    """
    with safe_globals([argparse.Namespace]):
        ckpt = load_from_http(filename, map_location=map_location)
    state_dict = extract_state_dict(ckpt)
    if not is_authors_classifier(state_dict):
        return ckpt
    return dict(state_dict=convert_official(state_dict, with_head=True)[0],
                meta=dict(source=osp.basename(filename)))


def load_model_checkpoint(model: nn.Module, filename: str,
                          logger=None) -> dict:
    """Load every weight of ``model`` from ``filename``, or raise
    :class:`CheckpointMismatch`; extra keys are left out with a warning.
    Returns the checkpoint's meta, whose ``dataset_meta`` also goes to the
    model."""
    if is_model_wrapper(model):
        model = model.module
    ckpt = read_checkpoint(filename)
    state_dict = {re.sub(r'^module\.', '', k): v
                  for k, v in extract_state_dict(ckpt).items()}
    meta = dict(ckpt.get('meta') or {})
    theirs = None
    if is_authors_classifier(state_dict) and hasattr(model, 'head'):
        state_dict = convert_official(state_dict, with_head=True)[0]
        theirs = 'converted to our names (their ImageNet classifier)'
    elif is_official({k.partition('.')[2]: v for k, v in state_dict.items()
                      if k.startswith('backbone.')}):
        made = ', '.join(v for k, v in meta.items() if k.endswith('_version'))
        theirs = (f'renamed to ours by the backbone (their '
                  f'{made or "mmdet 2 / mmseg 0.x"} model)')
    try:
        result = model.load_state_dict(state_dict, strict=False)
    except CheckpointMismatch as e:
        raise CheckpointMismatch(f'{filename}: {e}') from None
    except RuntimeError as e:  # shapes of the neck or heads
        raise CheckpointMismatch(
            f'{filename} does not fit this model (another dataset or '
            f'head?): {e}') from None
    missing = [k for k in result.missing_keys
               if not k.endswith('num_batches_tracked')]
    if missing:
        parts = sorted({k.split('.')[0] for k in missing})
        raise CheckpointMismatch(
            f'{filename} lacks {len(missing)} weights of this model, in '
            f'{", ".join(parts)} (e.g. {missing[:3]}): it was made for '
            f'another model; use the config it was trained with.')
    if result.unexpected_keys:
        print_log(f'{filename}: {len(result.unexpected_keys)} keys this model '
                  f'does not have were left out, e.g. '
                  f'{result.unexpected_keys[:3]}', logger=logger,
                  level=logging.WARNING)
    dataset_meta = dataset_meta_of(meta)
    if dataset_meta is not None:
        meta['dataset_meta'] = dataset_meta
        model.dataset_meta = dataset_meta
    print_log((f"{filename} holds the authors' TransXNet keys: {theirs}; "
               if theirs else f'{filename}: ')
              + f'loaded all {len(model.state_dict())} weights of the model',
              logger=logger)
    return meta
