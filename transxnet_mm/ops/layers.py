"""A Sequential that runs through the ops: same parameters and state-dict
keys as ``nn.Sequential``."""
from torch import Tensor, nn

from .gelu_bn import fused_step
from .inplace import inplace_


class LeanSequential(nn.Sequential):
    """``nn.Sequential`` that keeps less memory: at inference its layers
    after the first run in place (:func:`inplace_`); in training a GELU then
    BatchNorm (then a 1x1 conv) runs as one Function that saves only the
    GELU's input (:func:`fused_step`)."""

    def forward(self, x: Tensor) -> Tensor:
        layers = list(self)
        i = 0
        while i < len(layers):
            out, used = fused_step(layers, i, x)
            if used:
                x, i = out, i + used
                continue
            x = inplace_(layers[i], x) if i else layers[i](x)
            i += 1
        return x
