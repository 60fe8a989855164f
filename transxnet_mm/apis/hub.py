"""Our models by name in mmpretrain's APIs: after ``import transxnet_mm``,
``mmpretrain.get_model('transxnet-t_in1k', pretrained=True)``,
``ImageClassificationInferencer('transxnet-t_in1k')`` and
``mmpretrain.list_models('transxnet*')`` read our model index (the
metafile's names, configs and ``Weights``), as they read mmpretrain's own.
``pretrained=True`` loads the authors' ImageNet file from its release URL
(:func:`.checkpoint.load_authors_release`).
"""
import os.path as osp

from ..utils.config_lookup import mim_dir


def register_model_index() -> bool:
    """Register ``.mim/model-index.yml`` with mmpretrain's ``ModelHub``
    (once; a no-op without mmpretrain or an installed ``.mim``). Returns
    whether our models are registered."""
    try:
        from mmpretrain.apis import ModelHub
    except ImportError:
        return False
    index = osp.join(mim_dir(), 'model-index.yml')
    if not osp.isfile(index):
        return False
    if not ModelHub.has('transxnet-t_in1k'):
        ModelHub.register_model_index(index, config_prefix=mim_dir())
    return True
