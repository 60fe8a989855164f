"""Our configs as bases of a user's own: ``transxnet_mm::<folder>/<file>.py``.

The configs ship in ``transxnet_mm/.mim/configs`` (``setup.py``), as in
mmdet. Upstream, MMEngine 0.10 resolves ``package::`` bases only for
OpenMMLab packages, misses the folder of a PEP 660 editable install, and
scopes such a base to ``transxnet_mm`` (no registries), not its
``default_scope``. :func:`enable` (run on ``import transxnet_mm``, so
before ``Config.fromfile``) reads our prefix from ``.mim/configs`` without
a scope, as a relative ``_base_``.
"""
import difflib
import os
import os.path as osp
from typing import Callable, List, Optional, Tuple

from mmengine.config import Config

PREFIX = 'transxnet_mm::'


def mim_dir() -> str:
    """This package's ``.mim`` folder."""
    return osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), '.mim')


def available_configs() -> List[str]:
    """Every ``<folder>/<file>.py`` under ``.mim/configs``."""
    root = osp.join(mim_dir(), 'configs')
    found = []
    for folder, _, files in os.walk(root, followlinks=True):
        found += [osp.relpath(osp.join(folder, f), root) for f in files
                  if f.endswith('.py')]
    return sorted(found)


def resolve(cfg_path: str) -> str:
    """The file of ``transxnet_mm::<folder>/<file>.py``, or a clear error."""
    rel = cfg_path[len(PREFIX):]
    root = osp.join(mim_dir(), 'configs')
    if not osp.isdir(root):
        raise FileNotFoundError(
            f'{cfg_path}: this transxnet_mm ({osp.dirname(mim_dir())}) has '
            f'no .mim/configs. Install it from a wheel (pip install '
            f'transxnet_mm-*.whl) or in editable mode (pip install -e .) so '
            f'that setup.py adds them.')
    path = osp.join(root, rel)
    if not osp.isfile(path):
        names = available_configs()
        close = difflib.get_close_matches(rel, names, n=3, cutoff=0.4)
        hint = (f' Did you mean {", ".join(PREFIX + c for c in close)}?'
                if close else f' Available: {", ".join(names)}.')
        raise FileNotFoundError(f'{cfg_path}: no such config in {root}.' +
                                hint)
    return path


def _lookup(original: Callable) -> Callable:

    def get_cfg_path(cfg_path: str,
                     filename: str) -> Tuple[str, Optional[str]]:
        if cfg_path.startswith(PREFIX):
            return resolve(cfg_path), None
        return original(cfg_path, filename)

    get_cfg_path.transxnet_mm_original = original
    return get_cfg_path


def enable() -> None:
    """Let ``Config`` read ``transxnet_mm::`` bases (idempotent)."""
    current = Config.__dict__['_get_cfg_path'].__func__
    if not hasattr(current, 'transxnet_mm_original'):
        Config._get_cfg_path = staticmethod(_lookup(current))
