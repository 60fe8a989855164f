"""The one model builder of our tools and tests."""
import copy
import importlib
from typing import Optional

import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import init_default_scope
from torch import nn

from ..utils.compat import trusted_local_checkpoints
from .checkpoint import load_model_checkpoint


def test_dataset_meta(cfg: Config) -> dict:
    """The class names (and palette) of the config's test dataset class:
    what the toolboxes' visualisers draw with when a checkpoint has none."""
    scope = cfg.get('default_scope', 'mmdet')
    datasets = importlib.import_module(f'{scope}.registry').DATASETS
    dataset = cfg.get('test_dataloader', {}).get('dataset', {}).get('type')
    cls = datasets.get(dataset) if dataset else None
    return dict(getattr(cls, 'METAINFO', None) or {})


def build_model(cfg: Config,
                checkpoint: Optional[str] = None,
                device: str = 'cpu',
                inference: bool = True,
                logger=None) -> nn.Module:
    """The config's model, built with the registry of its toolbox (its
    ``default_scope``); ``model.cfg`` is the config.

    For inference (the default): in eval mode with plain BatchNorm, without
    the backbone's ``init_cfg``; the weights are ``checkpoint``'s, loaded
    completely or not at all (:func:`.load_model_checkpoint`), or the
    random initialisation; ``dataset_meta`` is the checkpoint's, else the
    test dataset's. With ``inference=False``, the model as the toolbox's
    runner builds it (SyncBN and ``init_cfg`` kept, ``init_weights`` not
    called), on ``device`` ('meta': structure only, nothing allocated).
    """
    scope = cfg.get('default_scope', 'mmdet')
    init_default_scope(scope)
    registry = importlib.import_module(f'{scope}.registry').MODELS
    model_cfg = copy.deepcopy(cfg.model)
    if scope == 'mmpretrain':
        # mmpretrain keeps the preprocessor at the top level of its configs;
        # its runner and get_model move it into the model the same way
        model_cfg.setdefault('data_preprocessor', cfg.get('data_preprocessor'))
    if not inference:
        with torch.device(device):
            model = registry.build(model_cfg)
        model.cfg = cfg
        return model
    if scope == 'mmpretrain':
        model_cfg.pop('train_cfg', None)  # the training batch augments
    if 'backbone' in model_cfg:
        model_cfg.backbone.pop('init_cfg', None)
    model = revert_sync_batchnorm(registry.build(model_cfg))
    model.cfg = cfg
    model.dataset_meta = test_dataset_meta(cfg)
    if checkpoint is not None:
        with trusted_local_checkpoints():
            load_model_checkpoint(model, checkpoint, logger=logger)
    return model.to(device).eval()
