"""Performance kernels of the TransXNet backbone, one module per op.

Each is a drop-in for a plain PyTorch computation, equal to float32 rounding.
:mod:`.rules` decides where each applies; :func:`use_kernels` turns them off,
:func:`exporting` selects their ONNX form, :func:`explain` reports the paths.
"""
from .attention import BiasedAttention, biased_attention
from .bias_resize import (BicubicResize, bicubic, bicubic_by_taps, cubic_taps,
                          resize_bias, resize_pos_bias)
from .depthwise import (DepthwiseConv2dChannelsLast, DepthwiseConv2dCPU,
                        DWConv2d, depthwise_conv2d)
from .gelu_bn import (GeluBatchNorm, GeluBatchNormConv1x1,
                      GeluBatchNormDWConvs, gelu_bn_dwconvs)
from .inplace import add_residual, inplace_, split_convs
from .layer_scale import scaled_batch_norm, scaled_branch
from .explain import decisions, explain
from .layers import LeanSequential, adaptive_avg_pool2d, gelu_bn_seq
from .rules import KERNELS, applies, exporting, kernels_enabled, use_kernels

__all__ = [
    'BiasedAttention', 'biased_attention', 'BicubicResize', 'bicubic',
    'resize_bias', 'resize_pos_bias', 'bicubic_by_taps', 'cubic_taps',
    'adaptive_avg_pool2d', 'exporting', 'DepthwiseConv2dCPU',
    'DepthwiseConv2dChannelsLast', 'depthwise_conv2d', 'GeluBatchNorm',
    'GeluBatchNormConv1x1', 'GeluBatchNormDWConvs', 'gelu_bn_dwconvs',
    'gelu_bn_seq', 'DWConv2d', 'LeanSequential', 'add_residual', 'inplace_',
    'split_convs', 'scaled_batch_norm', 'scaled_branch', 'KERNELS',
    'applies', 'decisions', 'explain', 'kernels_enabled', 'use_kernels'
]
