"""Our configs as bases of a user's own: ``transxnet_mm::<folder>/<file>.py``.

The package ships its configs, tools and model index in ``transxnet_mm/.mim/``
(``setup.py``: copies in a wheel, links in an editable install), as mmdet,
mmseg and mmpretrain do. A user's config anywhere inherits one of ours with

    _base_ = 'transxnet_mm::retinanet_transxnet_t.py'

MMEngine 0.10 resolves ``package::path`` bases only for OpenMMLab's own
packages (``mmengine.config.utils.MODULE2PACKAGE``); it finds the folder
through the package's distribution, which names a folder that does not exist
for a PEP 660 editable install, and it marks every dict of such a base with
the package as registry scope (``_scope_``), so a base of ours would be built
in a ``transxnet_mm`` scope that has no registries instead of the toolbox
scope its ``default_scope`` names. :func:`enable` (run on
``import transxnet_mm``) teaches ``Config`` our prefix alone: the base is
looked up in this package's own ``.mim/configs`` and read without a scope,
exactly as a relative ``_base_`` is. Every other path goes to MMEngine as it
was.

So ``transxnet_mm`` must be imported before the config is read: our tools do
(``tools/*.py``); in a script, ``import transxnet_mm`` before
``Config.fromfile``.
"""
import difflib
import os
import os.path as osp
from typing import Callable, List, Optional, Tuple

from mmengine.config import Config

PREFIX = 'transxnet_mm::'


def mim_dir() -> str:
    """This package's ``.mim`` folder (configs, tools, model-index.yml)."""
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
