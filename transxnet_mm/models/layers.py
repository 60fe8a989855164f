"""The parts of TransXNet's D-Mixer and MS-FFN (IDConv, OSRA, STE, the
multi-scale depthwise convs), inside named as in the authors' code so their
checkpoints load; the blocks are in :mod:`..backbones.transxnet`.
"""
from collections import OrderedDict
from typing import Sequence

import torch
from mmcv.cnn import build_norm_layer
from torch import Tensor, nn

from ..ops import (DWConv2d, adaptive_avg_pool2d, biased_attention,
                   depthwise_conv2d)
from .utils.validation import check_bn_batch


class ConvBN(nn.Sequential):
    """conv -> BatchNorm (-> activation): the authors' ConvModule, with its
    ``conv`` / ``bn`` names."""

    def __init__(self, conv: nn.Module, channels: int, norm_cfg: dict,
                 act: bool = False) -> None:
        layers = OrderedDict(conv=conv,
                             bn=build_norm_layer(norm_cfg, channels)[1])
        if act:
            layers['act'] = nn.GELU()
        super().__init__(layers)

    @classmethod
    def downsample(cls, in_channels: int, out_channels: int, kernel_size: int,
                   stride: int, norm_cfg: dict) -> 'ConvBN':
        """The stem and the layers between stages: strided conv, no bias."""
        return cls(nn.Conv2d(in_channels, out_channels, kernel_size, stride,
                             kernel_size // 2, bias=False), out_channels,
                   norm_cfg)


class LayerScale(nn.Module):
    """Per-channel scale AND bias on the residual branch, stored as the
    authors' (C, 1, 1, 1) depthwise 1x1 conv weight and (C,) bias."""

    def __init__(self, channels: int, init_value: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels, 1, 1, 1), init_value))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        return torch.addcmul(self.bias.view(1, -1, 1, 1), x,
                             self.weight.view(1, -1, 1, 1))


class IDConv(nn.Module):
    """Input-dependent depthwise convolution: each sample's KxK kernel and
    bias are softmax-weighted sums of G-entry banks, the weights predicted by
    ``proj`` from the KxK-pooled map (kernel) and the global mean (bias)."""

    def __init__(self, channels: int, kernel_size: int = 7, num_groups: int = 2,
                 reduction: int = 4, norm_cfg: dict = dict(type='BN')) -> None:
        super().__init__()
        assert num_groups > 1, f'IDConv needs num_groups > 1, got {num_groups}'
        self.kernel_size = kernel_size
        self.num_groups = num_groups
        self.weight = nn.Parameter(
            torch.empty(num_groups, channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(num_groups, channels))
        hidden = channels // reduction
        self.proj = nn.Sequential(
            ConvBN(nn.Conv2d(channels, hidden, 1, bias=False), hidden,
                   norm_cfg, act=True),
            nn.Conv2d(hidden, channels * num_groups, 1))
        nn.init.trunc_normal_(self.weight, std=0.02)
        nn.init.trunc_normal_(self.bias, std=0.02)

    def forward(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        K, G = self.kernel_size, self.num_groups
        check_bn_batch(self.proj[0].bn, B)
        attn = self.proj(adaptive_avg_pool2d(x, K)).reshape(B, G, C, K, K)
        attn = attn.softmax(dim=1)
        weight = (attn * self.weight.unsqueeze(0)).sum(dim=1)
        attn = self.proj(x.mean(dim=(2, 3), keepdim=True))
        attn = attn.reshape(B, G, C).softmax(dim=1)
        bias = (attn * self.bias.unsqueeze(0)).sum(dim=1)
        # The batch folded into the groups: one depthwise conv for all samples.
        out = depthwise_conv2d(x.reshape(1, B * C, H, W),
                               weight.reshape(B * C, 1, K, K),
                               bias.reshape(B * C), padding=K // 2)
        return out.reshape(B, C, H, W)


class OSRA(nn.Module):
    """Overlapping spatial reduction attention: keys and values from a map
    reduced by ``sr`` (stride ``sr_ratio``) and refined by ``local_conv``;
    the logits get the stage's relative position bias."""

    def __init__(self, channels: int, num_heads: int, sr_ratio: int,
                 norm_cfg: dict = dict(type='BN')) -> None:
        super().__init__()
        assert channels % num_heads == 0, \
            f'OSRA channels {channels} must be divisible by heads {num_heads}'
        self.num_heads = num_heads
        self.scale = (channels // num_heads)**-0.5
        self.q = nn.Conv2d(channels, channels, 1)
        self.kv = nn.Conv2d(channels, channels * 2, 1)
        if sr_ratio > 1:
            self.sr = nn.Sequential(
                ConvBN(DWConv2d(channels, sr_ratio + 3, sr_ratio, bias=False),
                       channels, norm_cfg, act=True),
                ConvBN(nn.Conv2d(channels, channels, 1, groups=channels,
                                 bias=False), channels, norm_cfg))
        else:
            self.sr = nn.Identity()
        self.local_conv = DWConv2d(channels, 3)

    def forward(self, x: Tensor, pos_bias: Tensor) -> Tensor:
        B, C, H, W = x.shape
        h = self.num_heads
        kv = self.sr(x)
        kv = kv + self.local_conv(kv)
        k, v = self.kv(kv).chunk(2, dim=1)
        # (B, heads, tokens, head_dim), contiguous: else SDPA's slow path.
        q, k, v = (t.reshape(B, h, C // h, -1).transpose(-1, -2).contiguous()
                   for t in (self.q(x), k, v))
        x = biased_attention(q, k, v, pos_bias, self.scale)
        return x.transpose(-1, -2).reshape(B, C, H, W)


class STE(nn.Sequential):
    """Squeezed token enhancer: 3x3 depthwise conv, then a 1x1 bottleneck,
    each with GELU and BatchNorm (indexed as the authors' layers)."""

    def __init__(self, channels: int, norm_cfg: dict) -> None:
        squeezed = max(16, channels // 8)
        super().__init__(
            DWConv2d(channels, 3), nn.GELU(),
            build_norm_layer(norm_cfg, channels)[1],
            nn.Conv2d(channels, squeezed, 1), nn.GELU(),
            build_norm_layer(norm_cfg, squeezed)[1],
            nn.Conv2d(squeezed, channels, 1),
            build_norm_layer(norm_cfg, channels)[1])


class MultiScaleDWConv(nn.Module):
    """Depthwise convs of kernels 1, 3, 5, 7 on four channel groups (the
    first group takes the remainder)."""

    def __init__(self, channels: int, kernels: Sequence[int] = (1, 3, 5, 7)):
        super().__init__()
        n = len(kernels)
        self.splits = [channels - channels // n * (n - 1)] + \
            [channels // n] * (n - 1)
        self.proj = nn.ModuleList(
            DWConv2d(c, k) for c, k in zip(self.splits, kernels))

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([conv(part) for conv, part in zip(
            self.proj, x.split(self.splits, dim=1))], dim=1)
