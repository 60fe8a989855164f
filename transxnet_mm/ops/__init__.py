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
from .explain import decisions, explain
from .gelu_bn import (GeluBatchNormConv1x1, GeluBatchNormDWConvs,
                      gelu_bn_conv, gelu_bn_dwconvs)
from .inplace import add_residual, batch_norm_, gelu_
from .layer_scale import scaled_batch_norm
from .pooling import adaptive_avg_pool2d
from .rules import (KERNELS, applies, exporting, kernels_enabled, lean,
                    use_kernels)

__all__ = [
    'BiasedAttention', 'biased_attention', 'BicubicResize', 'bicubic',
    'resize_bias', 'resize_pos_bias', 'bicubic_by_taps', 'cubic_taps',
    'adaptive_avg_pool2d', 'exporting', 'DepthwiseConv2dCPU',
    'DepthwiseConv2dChannelsLast', 'depthwise_conv2d', 'DWConv2d',
    'GeluBatchNormConv1x1', 'GeluBatchNormDWConvs', 'gelu_bn_conv',
    'gelu_bn_dwconvs', 'add_residual', 'batch_norm_', 'gelu_',
    'scaled_batch_norm', 'KERNELS', 'applies', 'decisions', 'explain',
    'kernels_enabled', 'lean', 'use_kernels'
]
