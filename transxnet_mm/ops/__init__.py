"""Performance kernels of the TransXNet backbone, one module per op.

Each op is a drop-in for a plain PyTorch computation and gives its result to
float32 rounding. :func:`use_kernels` turns all of them off at once (then
the backbone runs plain PyTorch ops only); they also step aside by
themselves where they do not apply (see :mod:`.switch`).
"""
from .attention import BiasedAttention, biased_attention
from .bias_resize import BicubicResize, bicubic, resize_bias, resize_pos_bias
from .depthwise import (DepthwiseConv2dChannelsLast, DepthwiseConv2dCPU,
                        depthwise_conv2d)
from .gelu_bn import GeluBatchNorm, GeluBatchNormConv1x1, gelu_bn_seq
from .inplace import add_residual, inplace_, split_convs
from .layers import Conv1x1, DWConv2d, LeanSequential
from .pointwise import PointwiseConv2dCPU, pointwise_conv2d
from .switch import kernels_enabled, use_kernels

__all__ = [
    'BiasedAttention', 'biased_attention', 'BicubicResize', 'bicubic',
    'resize_bias', 'resize_pos_bias', 'DepthwiseConv2dCPU',
    'DepthwiseConv2dChannelsLast', 'depthwise_conv2d', 'GeluBatchNorm',
    'GeluBatchNormConv1x1', 'gelu_bn_seq', 'Conv1x1', 'DWConv2d',
    'LeanSequential', 'add_residual', 'inplace_', 'split_convs',
    'PointwiseConv2dCPU', 'pointwise_conv2d', 'kernels_enabled',
    'use_kernels'
]
