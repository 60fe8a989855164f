"""TransXNet for the OpenMMLab stack.

Importing registers the backbone, transforms, initialiser and sampler in
MMEngine's root registries (which mmdet, mmseg and mmpretrain fall back to),
our configs as ``transxnet_mm::`` bases, MMEngine's loader of the authors'
release URLs, and our models in mmpretrain's hub.
"""
from .apis import register_model_index
from .datasets import AlignResize, FullBatchSampler
from .models import PyTorchDefaultInit, TransXNet
from .utils import config_lookup
from .utils.compat import allow_numpy_scalars
from .version import __version__

config_lookup.enable()
allow_numpy_scalars()  # the authors' mmseg 0.30 files hold numpy scalars
register_model_index()

__all__ = [
    'TransXNet', 'AlignResize', 'PyTorchDefaultInit', 'FullBatchSampler',
    '__version__'
]
