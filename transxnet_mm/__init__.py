"""TransXNet for the OpenMMLab stack.

Importing this package registers the ``TransXNet`` backbone once in MMEngine's
root ``MODELS`` registry, which the mmdet, mmseg and mmpretrain registries fall
back to, so their configs build it with ``type='TransXNet'`` after
``custom_imports = dict(imports=['transxnet_mm'], allow_failed_imports=False)``.
"""
from .models import TransXNet
from .version import __version__

__all__ = ['TransXNet', '__version__']
