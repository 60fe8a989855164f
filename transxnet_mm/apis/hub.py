"""Our models by name in mmpretrain's APIs, e.g.
``mmpretrain.get_model('transxnet-t_in1k', pretrained=True)``."""
import os.path as osp

from ..utils.config_lookup import mim_dir


def register_model_index() -> bool:
    """Register ``.mim/model-index.yml`` with mmpretrain's ``ModelHub``, once;
    returns whether our models are registered."""
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
