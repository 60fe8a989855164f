"""Modules that run through the ops: same parameters and state-dict keys as
the PyTorch modules they subclass."""
from torch import Tensor, nn

from .depthwise import depthwise_conv2d
from .gelu_bn import fused_step
from .inplace import inplace_
from .pointwise import pointwise_conv2d


class Conv1x1(nn.Conv2d):
    """``nn.Conv2d`` with a 1x1 kernel, through :func:`pointwise_conv2d`."""

    def __init__(self, in_channels: int, out_channels: int,
                 bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return pointwise_conv2d(x, self.weight, self.bias)


class DWConv2d(nn.Conv2d):
    """Depthwise ``nn.Conv2d`` (same padding), through
    :func:`depthwise_conv2d`."""

    def __init__(self, channels: int, kernel_size: int, stride: int = 1,
                 bias: bool = True) -> None:
        super().__init__(channels, channels, kernel_size, stride,
                         padding=kernel_size // 2, groups=channels, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return depthwise_conv2d(x, self.weight, self.bias, self.stride,
                                self.padding)


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
