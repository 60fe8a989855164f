"""What our tools call to get a model's weights (see ``checkpoint.py``)."""
from .checkpoint import load_model_checkpoint

__all__ = ['load_model_checkpoint']
