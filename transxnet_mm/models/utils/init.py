"""``PyTorchDefault``: an ``init_cfg`` initialiser for PyTorch's own default.

It re-runs ``reset_parameters()`` (uniform weights and bias in
+-1/sqrt(fan_in) for conv and linear), which MMEngine's initialisers, with
their constant bias, cannot. The authors' mmseg 0.30 training never called
``init_weights()``, so their ``conv_seg`` kept this default, not mmseg's
N(0, 0.01); ``configs/_base_/fpn_transxnet_ade20k.py`` overrides with it.
"""
from typing import List, Optional, Union

import torch.nn as nn
from mmengine.model.weight_init import BaseInit, update_init_info
from mmengine.registry import WEIGHT_INITIALIZERS


@WEIGHT_INITIALIZERS.register_module(name='PyTorchDefault')
class PyTorchDefaultInit(BaseInit):
    """Re-run PyTorch's default initialisation (``reset_parameters()``).

    Args:
        layer (str | list[str], optional): class names of the layers to
            reset; the whole module in an ``override``. Layers without
            ``reset_parameters`` are left alone.
    """

    def __init__(self, layer: Optional[Union[str, List[str]]] = None,
                 **kwargs) -> None:
        if kwargs:
            raise TypeError(
                f'PyTorchDefault takes only `layer` (and `name` inside an '
                f'override); it got {sorted(kwargs)}. PyTorch\'s default '
                f'sets the bias itself, so drop `bias`/`bias_prob`.')
        super().__init__(layer=layer)

    def __call__(self, module: nn.Module) -> None:

        def init(m: nn.Module) -> None:
            names = {m.__class__.__name__} | {
                b.__name__ for b in m.__class__.__bases__}
            if (self.wholemodule or names & set(self.layer)) and hasattr(
                    m, 'reset_parameters'):
                m.reset_parameters()

        module.apply(init)
        if hasattr(module, '_params_init_info'):
            update_init_info(module, init_info=self._get_init_info())

    def _get_init_info(self) -> str:
        return f'{self.__class__.__name__}: reset_parameters()'
