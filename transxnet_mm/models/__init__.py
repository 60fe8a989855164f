from .convert import convert_official, load_pretrained
from .transxnet import TransXNet

__all__ = ['TransXNet', 'convert_official', 'load_pretrained']
