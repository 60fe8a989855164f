"""The one model builder and checkpoint loader, and our models in mmpretrain's
APIs."""
from .builder import build_model, build_visualizer
from .checkpoint import AUTHORS_RELEASE, load_model_checkpoint
from .hub import register_model_index

__all__ = ['build_model', 'build_visualizer', 'load_model_checkpoint',
           'register_model_index', 'AUTHORS_RELEASE']
