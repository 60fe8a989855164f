"""What our tools call to get a model's weights (``checkpoint.py``), and our
models by name in mmpretrain's APIs (``hub.py``)."""
from .checkpoint import AUTHORS_RELEASE, load_model_checkpoint
from .hub import register_model_index

__all__ = ['load_model_checkpoint', 'register_model_index', 'AUTHORS_RELEASE']
