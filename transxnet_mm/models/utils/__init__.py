"""Checkpoint conversion from the authors' key names and the backbone's load
hook (``ckpt_convert``, ``load_hook``), the ``PyTorchDefault`` initialiser,
the backbone's argument and input checks, and ``compile_cfg``."""
from .ckpt_convert import convert_official, load_pretrained
from .init import PyTorchDefaultInit

__all__ = ['convert_official', 'load_pretrained', 'PyTorchDefaultInit']
