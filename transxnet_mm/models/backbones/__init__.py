from .transxnet import TransXNet

__all__ = ['TransXNet']
