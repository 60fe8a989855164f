"""Newer torch APIs with fallbacks for older releases (one place each)."""
from contextlib import nullcontext

import torch


def is_compiling() -> bool:
    """``torch.compiler.is_compiling()`` (torch >= 2.3)."""
    compiler = getattr(torch, 'compiler', None)
    if compiler is not None and hasattr(compiler, 'is_compiling'):
        return compiler.is_compiling()
    return torch._dynamo.is_compiling()


def autocast_enabled(device_type: str) -> bool:
    """``torch.is_autocast_enabled(device_type)`` (torch >= 2.4)."""
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:
        if device_type == 'cpu':
            return torch.is_autocast_cpu_enabled()
        return torch.is_autocast_enabled()


def safe_globals(objects: list):
    """``torch.serialization.safe_globals(objects)`` (torch >= 2.5): admit
    these classes to ``weights_only`` loading inside the block. Before 2.6
    ``torch.load`` defaults to ``weights_only=False``, so older releases need
    nothing."""
    context = getattr(torch.serialization, 'safe_globals', None)
    return context(objects) if context is not None else nullcontext()
