"""Performance kernels of the TransXNet backbone, one module per op.

Each op is a drop-in for a plain PyTorch computation and gives its result to
float32 rounding. Where each applies is one table, :mod:`.rules`;
:func:`use_kernels` turns all or some of them off (all off, the backbone runs
plain PyTorch ops only).
"""
from .attention import BiasedAttention, biased_attention
from .bias_resize import BicubicResize, bicubic, resize_bias, resize_pos_bias
from .depthwise import (DepthwiseConv2dChannelsLast, DepthwiseConv2dCPU,
                        DWConv2d, depthwise_conv2d)
from .gelu_bn import (GeluBatchNorm, GeluBatchNormConv1x1,
                      GeluBatchNormDWConvs, gelu_bn_dwconvs)
from .inplace import add_residual, inplace_, split_convs
from .layer_scale import scaled_batch_norm, scaled_branch
from .layers import LeanSequential, gelu_bn_seq
from .rules import KERNELS, applies, kernels_enabled, use_kernels

__all__ = [
    'BiasedAttention', 'biased_attention', 'BicubicResize', 'bicubic',
    'resize_bias', 'resize_pos_bias', 'DepthwiseConv2dCPU',
    'DepthwiseConv2dChannelsLast', 'depthwise_conv2d', 'GeluBatchNorm',
    'GeluBatchNormConv1x1', 'GeluBatchNormDWConvs', 'gelu_bn_dwconvs',
    'gelu_bn_seq', 'DWConv2d',
    'LeanSequential', 'add_residual', 'inplace_', 'split_convs',
    'scaled_batch_norm', 'scaled_branch',
    'KERNELS', 'applies',
    'kernels_enabled', 'use_kernels'
]
