"""TransXNet for the OpenMMLab stack.

Importing this package registers the ``TransXNet`` backbone once in MMEngine's
root ``MODELS`` registry, which the mmdet, mmseg and mmpretrain registries fall
back to, so their configs build it with ``type='TransXNet'`` after
``custom_imports = dict(imports=['transxnet_mm'], allow_failed_imports=False)``.
It also registers ``AlignResize`` (the authors' ADE20K test resize) in the
root ``TRANSFORMS`` registry, for mmseg's pipelines, the ``PyTorchDefault``
weight initialiser (``init.py``) and the ``FullBatchSampler`` batch sampler
(``samplers.py``) in MMEngine's root registries, and lets MMEngine's
``Config`` read our configs as bases of a user's own
(``_base_ = 'transxnet_mm::retinanet/retinanet_transxnet_t.py'``,
``config_lookup.py``).
"""
from . import config_lookup
from .init import PyTorchDefaultInit
from .models import TransXNet
from .samplers import FullBatchSampler
from .transforms import AlignResize
from .version import __version__

config_lookup.enable()

__all__ = [
    'TransXNet', 'AlignResize', 'PyTorchDefaultInit', 'FullBatchSampler',
    '__version__'
]
