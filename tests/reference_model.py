"""A plain, step-by-step formulation of the authors' TransXNet forward.

It runs directly on an authors'-format state dict (``network.*`` keys) and
reads every architecture fact (depths, heads, groups, kernel sizes, reduction
strides) from the tensors' shapes, so it shares nothing with
:class:`~transxnet_mm.models.TransXNet` but the maths.  Like the authors' code
it resizes the relative position bias inside every block and computes the
attention explicitly.  It is the test oracle and the speed benchmark's
baseline, not a model to train.
"""
import re
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

EPS = 1e-5


class _Ops:
    """conv / bn / gn on named entries of a state dict."""

    def __init__(self, sd: Dict[str, Tensor], training: bool) -> None:
        self.sd = sd
        self.training = training

    def conv(self, p: str, x: Tensor, stride: int = 1, padding: int = 0,
             groups: int = 1) -> Tensor:
        return F.conv2d(x, self.sd[p + 'weight'], self.sd.get(p + 'bias'),
                        stride, padding, 1, groups)

    def bn(self, p: str, x: Tensor) -> Tensor:
        sd = self.sd
        return F.batch_norm(x, sd[p + 'running_mean'].clone(),
                            sd[p + 'running_var'].clone(), sd[p + 'weight'],
                            sd[p + 'bias'], self.training, 0.1, EPS)

    def gn(self, p: str, x: Tensor) -> Tensor:
        return F.group_norm(x, 1, self.sd[p + 'weight'], self.sd[p + 'bias'],
                            EPS)


def _idconv(o: _Ops, p: str, x: Tensor) -> Tensor:
    bank = o.sd[p + 'weight']
    G, _, K, _ = bank.shape
    B, C, H, W = x.shape

    def proj(z: Tensor) -> Tensor:
        z = F.gelu(o.bn(p + 'proj.0.bn.', o.conv(p + 'proj.0.conv.', z)))
        return o.conv(p + 'proj.1.', z)

    scale = proj(F.adaptive_avg_pool2d(x, K)).reshape(B, G, C, K, K)
    scale = torch.softmax(scale, dim=1)
    weight = torch.sum(scale * bank.unsqueeze(0), dim=1)
    weight = weight.reshape(-1, 1, K, K)
    scale = proj(torch.mean(x, dim=[-2, -1], keepdim=True))
    scale = torch.softmax(scale.reshape(B, G, C), dim=1)
    bias = torch.sum(scale * o.sd[p + 'bias'].unsqueeze(0), dim=1).flatten(0)
    x = F.conv2d(x.reshape(1, -1, H, W), weight, bias, padding=K // 2,
                 groups=B * C)
    return x.reshape(B, C, H, W)


def _osra(o: _Ops, p: str, x: Tensor, pos: Tensor) -> Tensor:
    B, C, H, W = x.shape
    heads = pos.shape[1]
    q = o.conv(p + 'q.', x).reshape(B, heads, C // heads, -1).transpose(-1, -2)
    if p + 'sr.0.conv.weight' in o.sd:
        k = o.sd[p + 'sr.0.conv.weight'].shape[-1]
        sr = k - 3
        kv = o.conv(p + 'sr.0.conv.', x, stride=sr, padding=k // 2, groups=C)
        kv = F.gelu(o.bn(p + 'sr.0.bn.', kv))
        kv = o.bn(p + 'sr.1.bn.', o.conv(p + 'sr.1.conv.', kv, groups=C))
    else:
        kv = x
    kv = o.conv(p + 'local_conv.', kv, padding=1, groups=C) + kv
    k, v = torch.chunk(o.conv(p + 'kv.', kv), chunks=2, dim=1)
    k = k.reshape(B, heads, C // heads, -1)
    v = v.reshape(B, heads, C // heads, -1).transpose(-1, -2)
    attn = (q @ k) * (C // heads)**-0.5
    if attn.shape[2:] != pos.shape[2:]:
        pos = F.interpolate(pos, size=attn.shape[2:], mode='bicubic',
                            align_corners=False)
    attn = torch.softmax(attn + pos, dim=-1)
    return (attn @ v).transpose(-1, -2).reshape(B, C, H, W)


def _block(o: _Ops, p: str, x: Tensor, pos: Tensor) -> Tensor:
    C = x.shape[1]
    x = x + o.conv(p + 'pos_embed.', x, padding=3, groups=C)
    # D-Mixer: IDConv on the first half, OSRA on the second, then STE.
    y1, y2 = torch.chunk(o.gn(p + 'norm1.', x), chunks=2, dim=1)
    y = torch.cat([
        _idconv(o, p + 'token_mixer.local_unit.', y1),
        _osra(o, p + 'token_mixer.global_unit.', y2, pos)
    ], dim=1)
    t = p + 'token_mixer.proj.'
    z = o.bn(t + '2.', F.gelu(o.conv(t + '0.', y, padding=1, groups=C)))
    z = o.bn(t + '5.', F.gelu(o.conv(t + '3.', z)))
    y = o.bn(t + '7.', o.conv(t + '6.', z)) + y
    x = x + o.conv(p + 'layer_scale_1.', y, groups=C)
    # MS-FFN
    m = p + 'mlp.'
    y = o.bn(m + 'fc1.2.', F.gelu(o.conv(m + 'fc1.0.', o.gn(p + 'norm2.', x))))
    convs = [m + f'dwconv.proj.{i}.' for i in range(4)]
    splits = [o.sd[c + 'weight'].shape[0] for c in convs]
    parts = torch.split(y, splits, dim=1)
    y = torch.cat([
        o.conv(c, part, padding=o.sd[c + 'weight'].shape[-1] // 2,
               groups=part.shape[1]) for c, part in zip(convs, parts)
    ], dim=1) + y
    y = o.bn(m + 'norm.', F.gelu(y))
    y = o.bn(m + 'fc2.1.', o.conv(m + 'fc2.0.', y))
    return x + o.conv(p + 'layer_scale_2.', y, groups=C)


def reference_forward(state_dict: Dict[str, Tensor],
                      x: Tensor,
                      out_norms: Optional[Dict[str, Tensor]] = None,
                      training: bool = False) -> List[Tensor]:
    """The authors' dense backbone: four stage outputs through GroupNorm(1).

    Args:
        state_dict: the authors' keys (``patch_embed.*``, ``network.*``,
            ``relative_pos_enc.*``).
        x: images, (B, 3, H, W).
        out_norms: ``norm{i}.weight`` / ``norm{i}.bias`` of the output norms;
            absent ones are weight 1, bias 0 (their initial values).
        training: BatchNorm in training mode (batch statistics).
    """
    o = _Ops(state_dict, training)
    out_norms = out_norms or {}
    depth = {}
    for key in state_dict:
        m = re.match(r'network\.(\d+)\.(\d+)\.', key)
        if m:
            depth[int(m[1])] = max(depth.get(int(m[1]), 0), int(m[2]) + 1)
    x = o.conv('patch_embed.proj.conv.', x, stride=4, padding=3)
    x = o.bn('patch_embed.proj.bn.', x)
    outs = []
    for i in range(4):
        if i > 0:
            p = f'network.{2 * i - 1}.proj.'
            x = o.bn(p + 'bn.', o.conv(p + 'conv.', x, stride=2, padding=1))
        pos = state_dict[f'relative_pos_enc.{i}']
        for j in range(depth[2 * i]):
            x = _block(o, f'network.{2 * i}.{j}.', x, pos)
        C = x.shape[1]
        w = out_norms.get(f'norm{i}.weight', x.new_ones(C))
        b = out_norms.get(f'norm{i}.bias', x.new_zeros(C))
        outs.append(F.group_norm(x, 1, w, b, EPS))
    return outs
