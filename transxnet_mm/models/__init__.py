from .backbones import TransXNet
from .utils import PyTorchDefaultInit, convert_official, load_pretrained

__all__ = ['TransXNet', 'PyTorchDefaultInit', 'convert_official',
           'load_pretrained']
