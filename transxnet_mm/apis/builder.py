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


def default_dataset_meta(cfg: Config) -> dict:
    """The config's test dataset classes (and palette), for checkpoints
    without any."""
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
    """The config's model, built with its ``default_scope``'s registry.

    For inference: eval mode, plain BatchNorm, no backbone ``init_cfg``,
    ``checkpoint``'s weights if given. With ``inference=False``: as the
    runner builds it, on ``device`` ('meta': structure only).
    """
    scope = cfg.get('default_scope', 'mmdet')
    init_default_scope(scope)
    registry = importlib.import_module(f'{scope}.registry').MODELS
    model_cfg = copy.deepcopy(cfg.model)
    if scope == 'mmpretrain':
        # mmpretrain's runner moves the top-level preprocessor in the same way
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
    model.dataset_meta = default_dataset_meta(cfg)
    if checkpoint is not None:
        with trusted_local_checkpoints():
            load_model_checkpoint(model, checkpoint, logger=logger)
    return model.to(device).eval()


def build_visualizer(model: nn.Module):
    """The config's visualizer with the model's class names."""
    from mmengine.registry import VISUALIZERS

    visualizer = VISUALIZERS.build(model.cfg.visualizer)
    visualizer.dataset_meta = model.dataset_meta
    return visualizer
