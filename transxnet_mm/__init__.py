"""TransXNet for the OpenMMLab stack.

Importing this package registers the ``TransXNet`` backbone once in MMEngine's
root ``MODELS`` registry, which the mmdet, mmseg and mmpretrain registries fall
back to, so their configs build it with ``type='TransXNet'`` after
``custom_imports = dict(imports=['transxnet_mm'], allow_failed_imports=False)``.
It also registers ``AlignResize`` (the authors' ADE20K test resize) in the
root ``TRANSFORMS`` registry, for mmseg's pipelines, the ``PyTorchDefault``
weight initialiser (``models/utils/init.py``) and the ``FullBatchSampler``
batch sampler (``datasets/samplers.py``) in MMEngine's root registries, and
lets MMEngine's ``Config`` read our configs as bases of a user's own
(``_base_ = 'transxnet_mm::retinanet_transxnet_t.py'``,
``utils/config_lookup.py``). torch's ``weights_only`` loading is let to read
numpy scalars, which the authors' mmseg 0.30 checkpoints hold
(``utils/compat.allow_numpy_scalars``). MMEngine's checkpoint loader reads
the authors' release URLs (``apis/checkpoint.py``), and mmpretrain's
``get_model`` / inferencers find our classifiers by name
(``transxnet-t_in1k``, ``apis/hub.py``).
"""
from .apis import register_model_index
from .datasets import AlignResize, FullBatchSampler
from .models import PyTorchDefaultInit, TransXNet
from .utils import config_lookup
from .utils.compat import allow_numpy_scalars
from .version import __version__

config_lookup.enable()
allow_numpy_scalars()  # the authors' mmseg 0.30 files (see its docstring)
register_model_index()

__all__ = [
    'TransXNet', 'AlignResize', 'PyTorchDefaultInit', 'FullBatchSampler',
    '__version__'
]
