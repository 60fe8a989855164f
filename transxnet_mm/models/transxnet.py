"""TransXNet backbone (Lou et al., "TransXNet: Learning Both Global and Local
Dynamics with a Dual Dynamic Token Mixer", IEEE TNNLS).

An image flows stem -> stage 1..4 (each: downsample, blocks) -> output norms.
Each block is DPE -> D-Mixer (IDConv | OSRA, then STE) -> MS-FFN, pre-norm with
layer scale.  The numerics follow the authors' ``models/transxnet.py`` exactly,
so their ImageNet checkpoints (see :mod:`transxnet_mm.models.convert`) give
their outputs.
"""
import math
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmcv.cnn import build_norm_layer
from mmcv.cnn.bricks import DropPath
from mmengine.logging import MMLogger
from mmengine.model import BaseModule
from mmengine.registry import MODELS
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.utils import _pair

from .convert import load_pretrained

# The relative position biases are stored for a 224x224 input (the ImageNet
# resolution) and resized to the actual attention shape at run time.
BIAS_IMAGE_SIZE = 224
STEM_STRIDE = 4


def _eager() -> bool:
    """Neither traced (torch.jit.trace, e.g. by the FLOPs counter) nor
    compiled: our autograd Functions and in-place shortcuts are for eager
    mode; traced or compiled code takes the plain ops."""
    return not (torch.jit.is_tracing() or torch.compiler.is_compiling())


def _bicubic(x: Tensor, size: Tuple[int, int]) -> Tensor:
    """The authors' resize of the position bias (bicubic, align_corners
    False)."""
    return F.interpolate(x, size=size, mode='bicubic', align_corners=False)


def _inference() -> bool:
    """No gradients and eager: intermediate maps may be overwritten."""
    return not torch.is_grad_enabled() and _eager()


def _inplace(layer: nn.Module, x: Tensor) -> Tensor:
    """``layer(x)`` written into ``x`` if ``layer`` is a GELU or an eval-mode
    BatchNorm (elementwise: no new map needed; GELU gives the same bits,
    BatchNorm agrees to float32 rounding); any other layer is called as it
    is. For intermediate maps at inference only."""
    if isinstance(layer, nn.GELU) and layer.approximate == 'none':
        return torch.ops.aten.gelu_(x)
    if (isinstance(layer, _BatchNorm) and not layer.training
            and layer.running_var is not None):
        # PyTorch's eval formula: x * alpha + beta.
        alpha = 1 / torch.sqrt(layer.running_var + layer.eps)
        beta = -layer.running_mean * alpha
        if layer.affine:
            alpha = alpha * layer.weight
            beta = layer.bias - layer.running_mean * alpha
        shape = (-1, ) + (1, ) * (x.dim() - 2)
        return x.mul_(alpha.view(shape)).add_(beta.view(shape))
    return layer(x)


def _add_residual(branch: Tensor, x: Tensor) -> Tensor:
    """``x + branch``; at inference written into ``branch``, a fresh map
    the branch just made (the same sum, the same bits)."""
    return branch.add_(x) if _inference() else x + branch


class LeanSequential(nn.Sequential):
    """``nn.Sequential`` whose GELUs and BatchNorms after the first layer
    work in place at inference (:func:`_inplace`): the same result without a
    new map per layer (fewer page faults, lower peak memory)."""

    def forward(self, x: Tensor) -> Tensor:
        if not _inference():
            return super().forward(x)
        for i, layer in enumerate(self):
            x = _inplace(layer, x) if i else layer(x)
        return x


def conv_bn(in_channels: int, out_channels: int, kernel_size: int,
            stride: int, norm_cfg: dict) -> nn.Sequential:
    """Bias-free convolution followed by BatchNorm: the stem and the
    downsampling layers between stages."""
    return LeanSequential(
        OrderedDict(
            conv=nn.Conv2d(in_channels, out_channels, kernel_size, stride,
                           padding=kernel_size // 2, bias=False),
            bn=build_norm_layer(norm_cfg, out_channels)[1]))


def _depthwise_weight_grad(x: Tensor, grad: Tensor, kernel: Tuple[int, int],
                           padding: Tuple[int, int]) -> Tensor:
    """Weight gradient of a stride-1 depthwise conv as a depthwise conv of
    the padded input with the output gradient as kernel.

    Samples and blocks of ``rows`` output rows are folded into the channels
    and the partial kernels summed, so that each float32 sum spans ~2K
    products, not the whole map: summed at once its rounding error was ~3x
    PyTorch's (3e-6 vs 8e-7 relative at 2x48x128x128, 7x7), in blocks it is
    ~1e-6. This matters beyond the weight: IDConv's kernels are computed
    from the input, so their gradient flows on into the network.
    """
    (B, C, _, _), (Ho, Wo), (K1, K2) = x.shape, grad.shape[2:], kernel
    p1, p2 = padding
    rows = max(1, 2048 // Wo)
    n = -(-Ho // rows)
    extra = n * rows - Ho
    grad = F.pad(grad, (0, 0, 0, extra))
    xp = F.pad(x, (p2, p2, p1, p1 + extra))
    win = rows + K1 - 1
    xp = xp.unfold(2, win, rows).permute(1, 0, 2, 4, 3)
    out = F.conv2d(
        xp.reshape(1, C * B * n, win, xp.shape[-1]),
        grad.reshape(B, C, n, rows, Wo).transpose(0, 1).reshape(
            C * B * n, 1, rows, Wo),
        groups=C * B * n)
    return out[0, :, :, :K2].reshape(C, B * n, K1, K2).sum(1, keepdim=True)


class DepthwiseConv2dCPU(torch.autograd.Function):
    """Stride-1 depthwise convolution whose weight gradient is one more
    convolution.

    oneDNN's CPU depthwise backward takes 10-25x its forward for 5x5 and 7x7
    kernels (torch 2.13, the backbone's shapes), nearly all of it in the
    weight gradient. That gradient, ``sum over b, y, x of
    grad[b, c, y, x] * x_pad[b, c, y + i, x + j]``, is itself a depthwise
    convolution: of the padded input, with the output gradient as the kernel
    and the batch folded into the channels,
    which runs 4-12x faster. The input gradient stays PyTorch's own.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Optional[Tensor],
                padding: Tuple[int, int]) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.padding = padding
        return F.conv2d(x, weight, bias, 1, padding, 1, x.shape[1])

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple:
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.convolution_backward(
                grad, x, weight, None, (1, 1), ctx.padding, (1, 1), False,
                (0, 0), x.shape[1], (True, False, False))[0]
        if ctx.needs_input_grad[1]:
            grad_w = _depthwise_weight_grad(x, grad, weight.shape[2:],
                                            ctx.padding)
        if ctx.needs_input_grad[2]:
            grad_b = grad.sum((0, 2, 3))
        return grad_x, grad_w, grad_b, None


def depthwise_conv2d(x: Tensor, weight: Tensor, bias: Optional[Tensor],
                     stride: Union[int, Tuple[int, int]] = 1,
                     padding: Union[int, Tuple[int, int]] = 0) -> Tensor:
    """Depthwise convolution (one filter per channel), NCHW in and out.

    Training on CPU (torch 2.13, the backbone's shapes, 2 threads): 5x5 and
    7x7 kernels of stride 1 on maps of 28x28 and more take
    :class:`DepthwiseConv2dCPU` (forward + backward 1.2-3x faster than the
    best oneDNN layout; on 14x14 and 7x7 maps its large-kernel convolution
    is 7-20x slower); other kernels larger than 1x1 run in the channels-last
    layout, where oneDNN's backward is up to 2x faster than in NCHW, which
    outweighs the two layout copies.
    Without gradients, for 1x1 kernels and on other devices PyTorch's
    convolution runs as it is (as fast or faster, measured).
    """
    groups = x.shape[1]
    if (x.device.type == 'cpu' and weight.shape[-1] > 1
            and torch.is_grad_enabled()
            and (x.requires_grad or weight.requires_grad)):
        stride, padding = _pair(stride), _pair(padding)
        if (stride == (1, 1) and min(weight.shape[2:]) >= 5
                and x.shape[2] * x.shape[3] >= 28 * 28 and _eager()):
            return DepthwiseConv2dCPU.apply(x, weight, bias, padding)
        x = x.contiguous(memory_format=torch.channels_last)
        return F.conv2d(x, weight, bias, stride, padding, 1,
                        groups).contiguous()
    return F.conv2d(x, weight, bias, stride, padding, 1, groups)


def _pointwise_forward(x: Tensor, weight: Tensor,
                       bias: Optional[Tensor]) -> Tensor:
    """``weight (Co, Ci) @ x[b] (Ci, H*W)`` (+ bias) for each sample b."""
    (B, C), Co = x.shape[:2], weight.shape[0]
    x3, w = x.reshape(B, C, -1), weight.reshape(Co, C)
    out = x.new_empty(B, Co, x3.shape[2])
    for i in range(B):
        if bias is None:
            torch.mm(w, x3[i], out=out[i])
        else:
            torch.addmm(bias.view(Co, 1), w, x3[i], out=out[i])
    return out.view(B, Co, *x.shape[2:])


class PointwiseConv2dCPU(torch.autograd.Function):
    """1x1 convolution as matrix products per sample, forward and backward.

    For NCHW maps oneDNN reorders the input to its blocked layout and the
    output back around every 1x1 convolution; ``weight (Co, Ci) @ x[b]
    (Ci, H*W)`` reads the map as it is (torch 2.13, 2 threads: 384 -> 64
    channels on 200x304, 35 -> 11 ms forward; 2x384x128x128, forward and
    backward 72 -> 34 ms). The backward is two products per sample and, for
    the bias, a sum (closer to float64 than oneDNN's: 1e-7 vs 4e-6).
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor,
                bias: Optional[Tensor]) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _pointwise_forward(x, weight, bias)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple:
        x, weight = ctx.saved_tensors
        (B, C), Co = x.shape[:2], weight.shape[0]
        x3, w = x.reshape(B, C, -1), weight.reshape(Co, C)
        grad = grad.reshape(B, Co, -1)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = x3.new_empty(B, C, x3.shape[2])
            for i in range(B):
                torch.mm(w.T, grad[i], out=grad_x[i])
            grad_x = grad_x.view_as(x)
        if ctx.needs_input_grad[1]:
            grad_w = grad[0] @ x3[0].T
            for i in range(1, B):
                grad_w.addmm_(grad[i], x3[i].T)
            grad_w = grad_w.view_as(weight)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum((0, 2))
        return grad_x, grad_w, grad_b


def pointwise_conv2d(x: Tensor, weight: Tensor,
                     bias: Optional[Tensor]) -> Tensor:
    """1x1 convolution: on CPU in eager mode :class:`PointwiseConv2dCPU`
    (TransXNet-S, 2 threads: inference at 800x1216 1.1-1.2x faster; a
    training step at 2x512x512 4% faster, 3.72 -> 3.57 s, measured with
    glibc keeping freed memory: with its defaults the gain is below this
    VM's noise), elsewhere (and under autocast) PyTorch's convolution."""
    if (x.device.type != 'cpu' or not _eager()
            or torch.is_autocast_enabled('cpu')):
        return F.conv2d(x, weight, bias)
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad
                                    or (bias is not None
                                        and bias.requires_grad)):
        return PointwiseConv2dCPU.apply(x, weight, bias)
    return _pointwise_forward(x, weight, bias)


class Conv1x1(nn.Conv2d):
    """``nn.Conv2d`` with a 1x1 kernel, through :func:`pointwise_conv2d`
    (same parameters and state dict keys)."""

    def __init__(self, in_channels: int, out_channels: int,
                 bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return pointwise_conv2d(x, self.weight, self.bias)


class DWConv2d(nn.Conv2d):
    """``nn.Conv2d`` with ``groups == channels``, through
    :func:`depthwise_conv2d` (same parameters and state dict keys)."""

    def __init__(self, channels: int, kernel_size: int, stride: int = 1,
                 bias: bool = True) -> None:
        super().__init__(channels, channels, kernel_size, stride,
                         padding=kernel_size // 2, groups=channels, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return depthwise_conv2d(x, self.weight, self.bias, self.stride,
                                self.padding)


class LayerScale(nn.Module):
    """Per-channel scale AND bias on the residual branch (the authors' layer
    scale carries a bias, initialised to zero)."""

    def __init__(self, channels: int, init_value: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels, ), init_value))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        return torch.addcmul(self.bias.view(1, -1, 1, 1), x,
                             self.weight.view(1, -1, 1, 1))


class IDConv(nn.Module):
    """Input-dependent depthwise convolution.

    Each sample gets its own KxK depthwise kernel and bias: softmax-weighted
    sums (over G groups) of a learnable kernel bank and bias bank, the weights
    predicted from the input by one shared projection.
    """

    def __init__(self, channels: int, kernel_size: int = 7, num_groups: int = 2,
                 reduction: int = 4, norm_cfg: dict = dict(type='BN')) -> None:
        super().__init__()
        assert num_groups > 1, f'IDConv needs num_groups > 1, got {num_groups}'
        self.channels = channels
        self.kernel_size = kernel_size
        self.num_groups = num_groups
        self.weight = nn.Parameter(
            torch.empty(num_groups, channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(num_groups, channels))
        self.pool = nn.AdaptiveAvgPool2d(kernel_size)
        hidden = channels // reduction
        self.proj = nn.Sequential(
            Conv1x1(channels, hidden, bias=False),
            build_norm_layer(norm_cfg, hidden)[1],
            nn.GELU(),
            Conv1x1(hidden, channels * num_groups))
        nn.init.trunc_normal_(self.weight, std=0.02)
        nn.init.trunc_normal_(self.bias, std=0.02)

    def forward(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        K, G = self.kernel_size, self.num_groups
        bn = self.proj[1]
        if B == 1 and bn.training and not (
                isinstance(bn, nn.SyncBatchNorm)
                and torch.distributed.is_available()
                and torch.distributed.is_initialized()):
            raise ValueError(
                'TransXNet cannot take a training step on one image per '
                "BatchNorm: IDConv normalises each sample's 1x1 pooled "
                "descriptor (as in the authors' model), which needs at least "
                '2 images. Use a batch of 2 or more per GPU (the paper: 2), '
                'SyncBN across GPUs, or eval mode for inference; for a last '
                'partial batch of one image set '
                'train_dataloader.batch_sampler.drop_last=True.')
        attn = self.proj(self.pool(x)).reshape(B, G, C, K, K).softmax(dim=1)
        weight = (attn * self.weight.unsqueeze(0)).sum(dim=1)
        attn = self.proj(x.mean(dim=(2, 3), keepdim=True))
        attn = attn.reshape(B, G, C).softmax(dim=1)
        bias = (attn * self.bias.unsqueeze(0)).sum(dim=1)
        # Fold the batch into the groups: one depthwise conv for all samples.
        out = depthwise_conv2d(
            x.reshape(1, B * C, H, W),
            weight.reshape(B * C, 1, K, K),
            bias.reshape(B * C),
            padding=K // 2)
        return out.reshape(B, C, H, W)


class OSRA(nn.Module):
    """Overlapping spatial reduction attention.

    Keys and values come from a spatially reduced map (overlapping depthwise
    conv of stride ``sr_ratio``) refined by a 3x3 depthwise conv; the logits
    get a relative position bias handed in by the stage.
    """

    def __init__(self, channels: int, num_heads: int, sr_ratio: int,
                 norm_cfg: dict = dict(type='BN')) -> None:
        super().__init__()
        assert channels % num_heads == 0, \
            f'OSRA channels {channels} must be divisible by heads {num_heads}'
        self.num_heads = num_heads
        self.scale = (channels // num_heads)**-0.5
        self.sr_ratio = sr_ratio
        self.q = Conv1x1(channels, channels)
        self.kv = Conv1x1(channels, channels * 2)
        if sr_ratio > 1:
            k = sr_ratio + 3
            self.sr = LeanSequential(
                DWConv2d(channels, k, sr_ratio, bias=False),
                build_norm_layer(norm_cfg, channels)[1],
                nn.GELU(),
                nn.Conv2d(channels, channels, 1, groups=channels, bias=False),
                build_norm_layer(norm_cfg, channels)[1])
        else:
            self.sr = nn.Identity()
        self.local_conv = DWConv2d(channels, 3)

    def forward(self, x: Tensor, pos_bias: Tensor) -> Tensor:
        B, C, H, W = x.shape
        h = self.num_heads
        kv = self.sr(x)
        kv = self.local_conv(kv) + kv
        k, v = self.kv(kv).chunk(2, dim=1)
        # (B, heads, tokens, head_dim), contiguous in head_dim: the fused
        # (flash) kernel needs it, else SDPA falls back to its slow math path.
        q, k, v = (t.reshape(B, h, C // h, -1).transpose(-1, -2).contiguous()
                   for t in (self.q(x), k, v))
        if torch.is_grad_enabled() and x.device.type == 'cpu':
            # Backward on CPU: SDPA would take its math path, which stores
            # the same (N x M) matrix and adds mask checks. Written out, with
            # the scale and the bias folded into the product (baddbmm: one
            # pass over the N x M logits instead of three), a TransXNet-T
            # training step at 2x512x512 is ~4% faster.
            N, M = pos_bias.shape[2:]
            attn = torch.baddbmm(
                pos_bias.expand(B, h, N, M).reshape(B * h, N, M),
                q.reshape(B * h, N, -1), k.reshape(B * h, M, -1).mT,
                alpha=self.scale)
            x = attn.softmax(dim=-1).view(B, h, N, M) @ v
        else:
            # softmax(q k^T * scale + bias) v, fused: the (N x M) attention
            # matrix is never stored (the authors' explicit product is in
            # models/reference.py; both agree to float32 rounding).
            x = F.scaled_dot_product_attention(
                q, k, v, attn_mask=pos_bias.to(q.dtype), scale=self.scale)
        return x.transpose(-1, -2).reshape(B, C, H, W)


class DMixer(nn.Module):
    """Dual dynamic token mixer: first half of the channels through IDConv,
    second half through OSRA, then the squeezed token enhancer (STE)."""

    def __init__(self, channels: int, kernel_size: int, num_groups: int,
                 num_heads: int, sr_ratio: int,
                 norm_cfg: dict = dict(type='BN')) -> None:
        super().__init__()
        assert channels % 2 == 0, f'D-Mixer channels {channels} must be even'
        half = channels // 2
        self.idconv = IDConv(half, kernel_size, num_groups, norm_cfg=norm_cfg)
        self.osra = OSRA(half, num_heads, sr_ratio, norm_cfg=norm_cfg)
        squeezed = max(16, channels // 8)
        self.ste = LeanSequential(
            DWConv2d(channels, 3),
            nn.GELU(),
            build_norm_layer(norm_cfg, channels)[1],
            Conv1x1(channels, squeezed),
            nn.GELU(),
            build_norm_layer(norm_cfg, squeezed)[1],
            Conv1x1(squeezed, channels),
            build_norm_layer(norm_cfg, channels)[1])

    def forward(self, x: Tensor, pos_bias: Tensor) -> Tensor:
        x1, x2 = x.chunk(2, dim=1)
        x = torch.cat([self.idconv(x1), self.osra(x2, pos_bias)], dim=1)
        return _add_residual(self.ste(x), x)


class MultiScaleDWConv(nn.Module):
    """Depthwise convs of kernels 1, 3, 5, 7 on four channel groups (the
    first group takes the remainder)."""

    def __init__(self, channels: int, kernels: Sequence[int] = (1, 3, 5, 7)):
        super().__init__()
        n = len(kernels)
        self.splits = [channels - channels // n * (n - 1)] + \
            [channels // n] * (n - 1)
        self.convs = nn.ModuleList(
            DWConv2d(c, k)
            for c, k in zip(self.splits, kernels))

    def forward(self, x: Tensor, residual: bool = False) -> Tensor:
        """The convs' outputs concatenated, plus ``x`` if ``residual`` (then,
        without gradients, written into ``x`` itself)."""
        parts = x.split(self.splits, dim=1)
        if residual and not torch.is_grad_enabled():
            # Inference: each group's sum written over its input slice once
            # that group's conv has read it (the same additions, the same
            # bits): at 800x1216 two fewer hidden-size maps at the peak.
            for conv, part in zip(self.convs, parts):
                part += conv(part)
            return x
        out = torch.cat([conv(p) for conv, p in zip(self.convs, parts)], 1)
        return out + x if residual else out


class MSFFN(nn.Module):
    """Multi-scale feed-forward network: 1x1 expand, multi-scale depthwise
    convs with a residual, 1x1 project back."""

    def __init__(self, channels: int, ratio: float,
                 norm_cfg: dict = dict(type='BN')) -> None:
        super().__init__()
        hidden = int(channels * ratio)
        self.fc1 = LeanSequential(
            Conv1x1(channels, hidden, bias=False), nn.GELU(),
            build_norm_layer(norm_cfg, hidden)[1])
        self.msdw = MultiScaleDWConv(hidden)
        self.act = nn.GELU()
        self.bn = build_norm_layer(norm_cfg, hidden)[1]
        self.fc2 = LeanSequential(
            Conv1x1(hidden, channels, bias=False),
            build_norm_layer(norm_cfg, channels)[1])

    def forward(self, x: Tensor) -> Tensor:
        x = self.msdw(self.fc1(x), residual=True)
        if _inference():
            return self.fc2(_inplace(self.bn, _inplace(self.act, x)))
        x = self.act(x)  # one statement each: each input freed in turn
        x = self.bn(x)
        return self.fc2(x)


class Block(nn.Module):
    """TransXNet block: x + DPE(x), then pre-norm D-Mixer and MS-FFN
    residuals, each with layer scale and drop path."""

    def __init__(self, channels: int, kernel_size: int, num_groups: int,
                 num_heads: int, sr_ratio: int, mlp_ratio: float,
                 drop_path: float = 0., layer_scale_init: float = 1e-5,
                 norm_cfg: dict = dict(type='BN'),
                 with_cp: bool = False) -> None:
        super().__init__()
        self.with_cp = with_cp
        self.dpe = DWConv2d(channels, 7)
        self.norm1 = nn.GroupNorm(1, channels)
        self.mixer = DMixer(channels, kernel_size, num_groups, num_heads,
                            sr_ratio, norm_cfg)
        self.ls1 = LayerScale(channels, layer_scale_init)
        self.norm2 = nn.GroupNorm(1, channels)
        self.ffn = MSFFN(channels, mlp_ratio, norm_cfg)
        self.ls2 = LayerScale(channels, layer_scale_init)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def _forward(self, x: Tensor, pos_bias: Tensor) -> Tensor:
        x = _add_residual(self.dpe(x), x)
        x = _add_residual(
            self.drop_path(self.ls1(self.mixer(self.norm1(x), pos_bias))), x)
        return _add_residual(
            self.drop_path(self.ls2(self.ffn(self.norm2(x)))), x)

    def forward(self, x: Tensor, pos_bias: Tensor) -> Tensor:
        if self.with_cp and x.requires_grad:
            return cp.checkpoint(self._forward, x, pos_bias,
                                 use_reentrant=False)
        return self._forward(x, pos_bias)


def _key_matrix(M: int, M2: int, like: Tensor) -> Tensor:
    """R_M^T (M, M2) of PyTorch's bicubic resize of M columns to M2: the
    rows of the resized identity (its float32 weights)."""
    eye = torch.eye(M, device=like.device, dtype=like.dtype)[None, None]
    return _bicubic(eye, (M, M2))[0, 0]


def _query_taps(N: int, N2: int, like: Tensor) -> Tuple[Tensor, Tensor]:
    """Source rows (4, N2) and their float32 weights (4, N2) of PyTorch's
    bicubic resize of N rows to N2 (align_corners False).

    Output row n reads rows base..base+3 (clamped), one of each residue
    mod 4, so probe c (ones on the rows = c mod 4) resized by
    ``F.interpolate`` itself gives the weight of the tap of residue c (taps
    clamped onto the same row add up, as in PyTorch). The first tap is
    computed as PyTorch does, in float32; where rounding could move it
    (source position within float eps of an integer) the misplaced tap's
    weight is ~0, so the error stays at rounding level.
    """
    rows = torch.arange(N, device=like.device)
    probes = (rows % 4 == torch.arange(4, device=like.device)[:, None])
    weights = _bicubic(probes.to(like.dtype)[None, :, :, None],
                       (N2, 1))[0, :, :, 0]
    src = (torch.arange(N2, device=like.device, dtype=torch.float32) +
           0.5) * (N / N2) - 0.5
    base = src.floor().long().clamp(max=N - 1) - 1
    c = torch.arange(4, device=like.device)[:, None]
    return (base + (c - base) % 4).clamp(0, N - 1), weights


def resize_bias(bias: Tensor, size: Tuple[int, int],
                block: int = 256) -> Tensor:
    """``F.interpolate(bias, size, mode='bicubic')`` of a (1, heads, N, M)
    position bias, computed separably.

    Along keys (M -> M2) a product with R_M^T (:func:`_key_matrix`); then
    along queries banded matrix products: each block of
    ``block`` output rows reads the few (~block * N / N2 + 4) source rows its
    taps touch.
    The result is PyTorch's to float32 rounding (the same taps and weights,
    the sums in another order); stage 1 of TransXNet-S at 800x1216
    (3136x49 -> 60800x950) takes 67 instead of 235 ms in ``F.interpolate``,
    whose kernel does 16 multiply-adds per output.
    """
    (N, M), (N2, M2) = bias.shape[2:], size
    if M2 != M:
        bias = bias @ _key_matrix(M, M2, bias)
    if N2 == N:
        return bias
    index, weights = _query_taps(N, N2, bias)
    blocks = -(-N2 // block)
    first = index[:, ::block].amin(0)  # first source row of each block
    last = F.pad(index, (0, blocks * block - N2), mode='replicate')
    width = int((last[:, block - 1::block].amax(0) - first).max()) + 1
    # R_N as (blocks, block, width): the taps of each block's rows.
    r_n = bias.new_zeros(blocks * block, width)
    rows = torch.arange(N2, device=bias.device).expand(4, N2)
    r_n.index_put_((rows, index - first.repeat_interleave(block)[:N2]),
                   weights, accumulate=True)
    r_n = r_n.view(blocks, block, width)
    window = (first[:, None] + torch.arange(width, device=bias.device))
    window = bias[0][:, window.clamp(max=N - 1)]  # (heads, blocks, width, M2)
    out = bias.new_empty(bias.shape[:2] + (N2, M2))
    full = N2 // block
    for h in range(bias.shape[1]):
        torch.bmm(r_n[:full], window[h, :full],
                  out=out[0, h, :full * block].view(full, block, M2))
        if full < blocks:
            torch.mm(r_n[full, :N2 - full * block], window[h, full],
                     out=out[0, h, full * block:])
    return out


class BicubicResize(torch.autograd.Function):
    """:func:`resize_bias` with a fast backward.

    PyTorch's CPU backward of the bicubic resize scatters every output
    gradient into 4x4 inputs one by one (111 of 2060 ms in a TransXNet-T
    training step at 2x512x512). The resize is linear and separable,
    ``out = R_N bias R_M^T`` with R_N holding 4 taps per row, so the
    gradient ``R_N^T grad R_M`` is one small matrix product and four
    ``index_add`` (about 10x faster). R_M and the taps' weights are read from
    ``F.interpolate`` itself, on probe inputs, so they are the forward's
    float32 weights.
    """

    @staticmethod
    def forward(ctx, bias: Tensor, size: Tuple[int, int]) -> Tensor:
        ctx.in_size = tuple(bias.shape[2:])
        return resize_bias(bias, size)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tuple[Tensor, None]:
        (N, M), (N2, M2) = ctx.in_size, tuple(grad.shape[2:])
        grad = grad @ _key_matrix(M, M2, grad).T  # (1, heads, N2, M)
        index, weights = _query_taps(N, N2, grad)
        out = grad.new_zeros(grad.shape[:2] + (N, M))
        for c in range(4):
            out.index_add_(2, index[c], grad * weights[c][:, None])
        return out, None


class TransXNetStage(nn.Module):
    """A stage's blocks and the one relative position bias they share.

    The bias is stored for a 224x224 input, shape (1, heads, N, M), and is
    resized (bicubic, as the authors do) to the actual attention shape once
    per forward, not once per block (:func:`resize_bias`).

    Nothing is kept between forwards: at 800x1216 the resized biases of
    TransXNet-S take 427 MiB, and keeping them for the next input of the
    same size saved 8% of an inference forward (1.81 vs 1.97 s, 2 threads)
    but raised its peak memory from 0.40 to 0.64 of the reference's.
    """

    def __init__(self, depth: int, channels: int, num_heads: int,
                 sr_ratio: int, bias_hw: int, dpr: Sequence[float],
                 **block_kwargs) -> None:
        super().__init__()
        self.sr_ratio = sr_ratio
        kv_hw = math.ceil(bias_hw / sr_ratio)
        self.relative_pos_bias = nn.Parameter(
            torch.zeros(1, num_heads, bias_hw**2, kv_hw**2))
        self.blocks = nn.ModuleList(
            Block(channels, num_heads=num_heads, sr_ratio=sr_ratio,
                  drop_path=dpr[i], **block_kwargs) for i in range(depth))

    def attention_shape(self, H: int, W: int) -> Tuple[int, int]:
        """Query and key token counts of OSRA on an HxW map."""
        s = self.sr_ratio
        return H * W, math.ceil(H / s) * math.ceil(W / s)

    def pos_bias(self, H: int, W: int) -> Tensor:
        """The bias resized for an HxW map; detached when no gradient is
        needed (CPU SDPA takes its slow math path for any mask that requires
        grad: 5x at 8x224x224)."""
        bias = self.relative_pos_bias
        if not (torch.is_grad_enabled() and bias.requires_grad):
            bias = bias.detach()
        size = self.attention_shape(H, W)
        if tuple(bias.shape[2:]) == size:
            return bias
        if _eager():
            return BicubicResize.apply(bias, size)
        return _bicubic(bias, size)

    def forward(self, x: Tensor) -> Tensor:
        bias = self.pos_bias(*x.shape[2:])
        for block in self.blocks:
            x = block(x, bias)
        return x


@MODELS.register_module()
class TransXNet(BaseModule):
    """TransXNet backbone with multi-scale outputs.

    Args:
        arch (str | dict): 't', 's', 'b' (or 'tiny', 'small', 'base'), or a
            dict with the keys of :attr:`arch_settings`.
        in_channels (int): Input image channels. Defaults to 3.
        out_indices (Sequence[int] | int): Stages to output (0-3, strides
            4/8/16/32); each output passes its own GroupNorm(1).
            Defaults to (0, 1, 2, 3).
        frozen_stages (int): -1 freezes nothing, 0 the stem, k > 0 the stem
            and stages 1..k (with their downsampling layers and output norms);
            frozen BatchNorms stay in eval mode. Defaults to -1.
        norm_eval (bool): Keep every BatchNorm in eval mode while training.
            Defaults to False.
        drop_path_rate (float): Stochastic depth, growing linearly with the
            block index up to this value. Defaults to 0.
        with_cp (bool): Gradient checkpointing of every block (saves memory,
            costs time). Defaults to False.
        norm_cfg (dict): Config of the BatchNorms (e.g. ``dict(type='SyncBN')``);
            the block and output norms are GroupNorm(1) as in the paper.
        init_cfg (dict, optional): ``dict(type='Pretrained', checkpoint=PATH)``
            with PATH an authors' ImageNet checkpoint or one of ours (see
            :func:`transxnet_mm.models.convert.load_pretrained`); ``prefix``
            picks a sub-module of a full-model checkpoint.
    """

    arch_settings: Dict[str, dict] = {
        **dict.fromkeys(['t', 'tiny'], dict(
            depths=[3, 3, 9, 3],
            channels=[48, 96, 224, 448],
            kernel_sizes=[7, 7, 7, 7],
            num_groups=[2, 2, 2, 2],
            sr_ratios=[8, 4, 2, 1],
            num_heads=[1, 2, 4, 8],
            mlp_ratios=[4, 4, 4, 4],
            layer_scale_init=1e-5)),
        **dict.fromkeys(['s', 'small'], dict(
            depths=[4, 4, 12, 4],
            channels=[64, 128, 320, 512],
            kernel_sizes=[7, 7, 7, 7],
            num_groups=[2, 2, 3, 4],
            sr_ratios=[8, 4, 2, 1],
            num_heads=[1, 2, 5, 8],
            mlp_ratios=[6, 6, 4, 4],
            layer_scale_init=1e-5)),
        **dict.fromkeys(['b', 'base'], dict(
            depths=[4, 4, 21, 4],
            channels=[76, 152, 336, 672],
            kernel_sizes=[7, 7, 7, 7],
            num_groups=[2, 2, 4, 4],
            sr_ratios=[8, 4, 2, 1],
            num_heads=[2, 4, 8, 16],
            mlp_ratios=[8, 8, 4, 4],
            layer_scale_init=1e-5)),
    }

    def __init__(self,
                 arch: Union[str, dict] = 't',
                 in_channels: int = 3,
                 out_indices: Union[int, Sequence[int]] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 drop_path_rate: float = 0.,
                 with_cp: bool = False,
                 norm_cfg: dict = dict(type='BN', requires_grad=True),
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.arch = self.parse_arch(arch)
        self.num_stages = len(self.arch['depths'])
        self.in_channels = in_channels
        self.out_indices = self.parse_out_indices(out_indices,
                                                  self.num_stages)
        if not (isinstance(frozen_stages, int)
                and -1 <= frozen_stages <= self.num_stages):
            raise ValueError(
                f'frozen_stages must be an int from -1 (nothing frozen) to '
                f'{self.num_stages} (everything frozen), got {frozen_stages!r}')
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.channels = list(self.arch['channels'])

        depths = self.arch['depths']
        dpr = [
            drop_path_rate * i / max(sum(depths) - 1, 1)
            for i in range(sum(depths))
        ]
        self.downsample_layers = nn.ModuleList()
        self.stages = nn.ModuleList()
        bias_hw = math.ceil(BIAS_IMAGE_SIZE / STEM_STRIDE)
        for i in range(self.num_stages):
            if i == 0:
                down = conv_bn(in_channels, self.channels[0], 7, STEM_STRIDE,
                               norm_cfg)
            else:
                down = conv_bn(self.channels[i - 1], self.channels[i], 3, 2,
                               norm_cfg)
                bias_hw = math.ceil(bias_hw / 2)
            self.downsample_layers.append(down)
            start = sum(depths[:i])
            self.stages.append(
                TransXNetStage(
                    depths[i],
                    self.channels[i],
                    num_heads=self.arch['num_heads'][i],
                    sr_ratio=self.arch['sr_ratios'][i],
                    bias_hw=bias_hw,
                    dpr=dpr[start:start + depths[i]],
                    kernel_size=self.arch['kernel_sizes'][i],
                    num_groups=self.arch['num_groups'][i],
                    mlp_ratio=self.arch['mlp_ratios'][i],
                    layer_scale_init=self.arch['layer_scale_init'],
                    norm_cfg=norm_cfg,
                    with_cp=with_cp))
        for i in self.out_indices:
            self.add_module(f'norm{i}', nn.GroupNorm(1, self.channels[i]))
        self.apply(self._init_module)
        self._freeze_stages()

    @classmethod
    def parse_arch(cls, arch: Union[str, dict]) -> dict:
        if isinstance(arch, str):
            key = arch.lower()
            if key not in cls.arch_settings:
                raise ValueError(
                    f'Unknown TransXNet arch {arch!r}; choose one of '
                    f'{sorted(cls.arch_settings)} or pass a dict with the '
                    f'keys {sorted(cls.arch_settings["t"])}.')
            return dict(cls.arch_settings[key])
        if isinstance(arch, dict):
            required = set(cls.arch_settings['t'])
            missing = required - set(arch)
            if missing:
                raise ValueError(
                    f'The TransXNet arch dict lacks {sorted(missing)}; it '
                    f'needs all of {sorted(required)}.')
            return dict(arch)
        raise TypeError(f'arch must be a str or a dict, got {type(arch)}')

    @staticmethod
    def parse_out_indices(out_indices: Union[int, Sequence[int]],
                          num_stages: int) -> Tuple[int, ...]:
        if isinstance(out_indices, int):
            out_indices = [out_indices]
        out = []
        for i in out_indices:
            if not isinstance(i, int) or not -num_stages <= i < num_stages:
                raise ValueError(
                    f'out_indices must hold stage indices from 0 to '
                    f'{num_stages - 1} (or negative from the end), got '
                    f'{tuple(out_indices)}')
            out.append(i % num_stages)
        if not out or len(set(out)) != len(out):
            raise ValueError(f'out_indices must be a non-empty set of stage '
                             f'indices, got {tuple(out_indices)}')
        return tuple(sorted(out))

    @staticmethod
    def _init_module(m: nn.Module) -> None:
        """The authors' initialisation (IDConv banks init themselves)."""
        if isinstance(m, nn.Conv2d):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.GroupNorm, _BatchNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def init_weights(self) -> None:
        if self.init_cfg is not None and self.init_cfg.get(
                'type') == 'Pretrained':
            load_pretrained(self, self.init_cfg['checkpoint'],
                            prefix=self.init_cfg.get('prefix'),
                            logger=MMLogger.get_current_instance())
            self._is_init = True
        else:
            super().init_weights()
        self._freeze_stages()

    def _freeze_stages(self) -> None:
        frozen: List[nn.Module] = []
        if self.frozen_stages >= 0:
            frozen.append(self.downsample_layers[0])
        for i in range(self.frozen_stages):
            if i > 0:
                frozen.append(self.downsample_layers[i])
            frozen.append(self.stages[i])
            if i in self.out_indices:
                frozen.append(getattr(self, f'norm{i}'))
        for m in frozen:
            m.eval()
            for p in m.parameters():
                p.requires_grad = False

    def train(self, mode: bool = True) -> 'TransXNet':
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    def _check_input(self, x: Tensor) -> None:
        """Clear errors for inputs the backbone cannot take (cheap: shapes,
        dtypes and devices only)."""
        if not isinstance(x, Tensor) or x.dim() != 4:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x)
            raise ValueError(f'TransXNet takes images of shape (B, C, H, W), '
                             f'got {shape}')
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f'TransXNet was built for {self.in_channels} input channels '
                f'but got {x.shape[1]}: convert the images (e.g. to RGB) or '
                f'set in_channels={x.shape[1]} in the backbone config')
        weight = self.downsample_layers[0].conv.weight
        if x.device != weight.device:
            raise ValueError(
                f'The input is on {x.device} but TransXNet is on '
                f'{weight.device}: move one to the other (x.to(device) or '
                f'model.to(device))')
        if x.dtype != weight.dtype and not torch.is_autocast_enabled(
                x.device.type):
            raise ValueError(
                f'The input is {x.dtype} but TransXNet\'s weights are '
                f'{weight.dtype}: cast the input (x.to({weight.dtype})) or '
                f'run under torch.autocast')

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        self._check_input(x)
        outs = []
        for i, (down, stage) in enumerate(zip(self.downsample_layers,
                                              self.stages)):
            x = stage(down(x))
            if i in self.out_indices:
                outs.append(getattr(self, f'norm{i}')(x))
        return tuple(outs)
