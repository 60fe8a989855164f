"""Pre-flight checks of a config: a missing dataset or checkpoint is one
clear line, not a traceback from inside a dataset class."""
import os.path as osp
from typing import Iterable, List, Tuple

from mmengine.config import Config

# The environment variable each toolbox's configs read their data root from.
DATA_ROOT_ENV = {'mmdet': 'COCO_ROOT', 'mmseg': 'ADE20K_ROOT',
                 'mmpretrain': 'IMAGENET_ROOT'}


def _dataset_paths(dataset: dict) -> List[Tuple[str, str]]:
    while isinstance(dataset.get('dataset'), dict):  # RepeatDataset & co.
        dataset = dataset['dataset']
    root = dataset.get('data_root') or ''
    paths = [('data_root', root)] if root else []
    if dataset.get('ann_file'):
        paths.append(('ann_file', osp.join(root, dataset['ann_file'])))
    prefix = dataset.get('data_prefix')
    items = prefix.items() if isinstance(prefix, dict) else [('', prefix)]
    for key, sub in items:
        if isinstance(sub, str) and sub:
            name = f'data_prefix.{key}' if key else 'data_prefix'
            paths.append((name, osp.join(root, sub)))
    return paths


def check_data(cfg: Config, loaders: Iterable[str]) -> None:
    """Every local dataset path of the named dataloaders (and evaluators)
    exists, else FileNotFoundError."""
    env = DATA_ROOT_ENV.get(cfg.get('default_scope', ''), 'the data root')
    for name in loaders:
        loader = cfg.get(name)
        if not loader:
            continue
        checks = [(f'{name}.dataset.{key}', path)
                  for key, path in _dataset_paths(loader.get('dataset', {}))]
        ev_key = name.replace('_dataloader', '_evaluator')
        evaluator = cfg.get(ev_key)
        for metric in (evaluator if isinstance(evaluator, list) else
                       [evaluator] if evaluator else []):
            if isinstance(metric, dict) and metric.get('ann_file'):
                checks.append((f'{ev_key}.ann_file', metric['ann_file']))
        for key, path in checks:
            if '://' not in path and not osp.exists(path):
                raise FileNotFoundError(
                    f'{key}: {path} does not exist. Put the dataset there, or '
                    f'set the environment variable {env}=/path/to/dataset/ '
                    f'(read by our configs), or pass --cfg-options '
                    f'{name}.dataset.data_root=/path/to/dataset/')


def check_pretrained(cfg: Config) -> None:
    """The backbone's pretrained checkpoint file exists, if one is set."""
    init_cfg = cfg.get('model', {}).get('backbone', {}).get('init_cfg')
    if not isinstance(init_cfg, dict) or init_cfg.get('type') != 'Pretrained':
        return
    path = init_cfg.get('checkpoint', '')
    if '://' not in path and not osp.isfile(path):
        raise FileNotFoundError(
            f'model.backbone.init_cfg.checkpoint: {path} does not exist. '
            f"Download the authors' ImageNet weights (transx-t/s/b.pth.tar) "
            f'to that path, or set another with --cfg-options '
            f'model.backbone.init_cfg.checkpoint=/path/to/file, or train '
            f'from scratch with model.backbone.init_cfg=None')
