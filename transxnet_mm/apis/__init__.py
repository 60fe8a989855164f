"""The one model builder (``builder.py``) and the one checkpoint loader
(``checkpoint.py``) of our tools and tests, and our models by name in
mmpretrain's APIs (``hub.py``)."""
from .builder import build_model
from .checkpoint import AUTHORS_RELEASE, load_model_checkpoint
from .hub import register_model_index

__all__ = ['build_model', 'load_model_checkpoint', 'register_model_index',
           'AUTHORS_RELEASE']
