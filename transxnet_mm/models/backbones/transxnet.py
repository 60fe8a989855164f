"""TransXNet backbone (Lou et al., "TransXNet: Learning Both Global and Local
Dynamics with a Dual Dynamic Token Mixer", IEEE TNNLS).

stem -> stage 1..4 (downsample, blocks) -> output norms; a block is DPE ->
D-Mixer (IDConv | OSRA, then STE) -> MS-FFN. Blocks keep the authors' names,
so their checkpoints load by renaming stage prefixes only.
"""
import math
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.utils.checkpoint as cp
from mmcv.cnn import build_norm_layer
from mmcv.cnn.bricks import DropPath
from mmengine.logging import MMLogger
from mmengine.model import BaseModule
from mmengine.registry import MODELS
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from ...ops import (DWConv2d, add_residual, gelu_bn_conv, gelu_bn_dwconvs,
                    lean, resize_pos_bias, scaled_batch_norm)
from ..layers import OSRA, STE, ConvBN, IDConv, LayerScale, MultiScaleDWConv
from ..utils.ckpt_convert import load_pretrained
from ..utils.compile import CompiledStages
from ..utils.load_hook import backbone_load_hook
from ..utils.validation import (check_compile_cfg, check_frozen_stages,
                                check_input, parse_arch, parse_out_indices)

# Position biases are stored for a 224x224 input, resized at run time.
BIAS_IMAGE_SIZE = 224
STEM_STRIDE = 4


class DMixer(nn.Module):
    """Dual dynamic token mixer: channel halves through IDConv and OSRA,
    then the STE (``proj``) with a residual."""

    def __init__(self, channels: int, kernel_size: int, num_groups: int,
                 num_heads: int, sr_ratio: int,
                 norm_cfg: dict = dict(type='BN')) -> None:
        super().__init__()
        assert channels % 2 == 0, f'D-Mixer channels {channels} must be even'
        half = channels // 2
        self.local_unit = IDConv(half, kernel_size, num_groups,
                                 norm_cfg=norm_cfg)
        self.global_unit = OSRA(half, num_heads, sr_ratio, norm_cfg=norm_cfg)
        self.proj = STE(channels, norm_cfg)

    def forward(self, x: Tensor, pos_bias: Tensor,
                layer_scale: Optional[LayerScale] = None) -> Tensor:
        """``Y + STE(Y)``, ``Y = [IDConv(X1), OSRA(X2)]``. With
        ``layer_scale`` (the block's lean path) that scaled, by the ops."""
        x1, x2 = x.chunk(2, dim=1)
        y = torch.cat([self.local_unit(x1), self.global_unit(x2, pos_bias)],
                      dim=1)
        if layer_scale is None:
            return y + self.proj(y)
        dwconv, _, bn1, squeeze, _, bn2, expand, bn3 = self.proj
        z = gelu_bn_conv(dwconv(y), bn1, squeeze.weight, squeeze.bias)
        z = gelu_bn_conv(z, bn2, expand.weight, expand.bias)
        return scaled_batch_norm(z, bn3, layer_scale.weight, layer_scale.bias,
                                 residual=y)


class MSFFN(nn.Module):
    """Multi-scale feed-forward network: 1x1 expand, multi-scale depthwise
    convs with a residual, 1x1 project back."""

    def __init__(self, channels: int, ratio: float,
                 norm_cfg: dict = dict(type='BN')) -> None:
        super().__init__()
        hidden = int(channels * ratio)
        self.fc1 = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False), nn.GELU(),
            build_norm_layer(norm_cfg, hidden)[1])
        self.dwconv = MultiScaleDWConv(hidden)
        self.act = nn.GELU()
        self.norm = build_norm_layer(norm_cfg, hidden)[1]
        self.fc2 = nn.Sequential(
            nn.Conv2d(hidden, channels, 1, bias=False),
            build_norm_layer(norm_cfg, channels)[1])

    def forward(self, x: Tensor,
                layer_scale: Optional[LayerScale] = None) -> Tensor:
        """``fc2(BN(GELU(H + DW(H))))``, ``H = fc1(X)``. With ``layer_scale``
        (the block's lean path) that scaled, by the ops."""
        if layer_scale is None:
            h = self.fc1(x)
            h = h + self.dwconv(h)
            return self.fc2(self.norm(self.act(h)))
        conv1, _, bn1 = self.fc1
        conv2, bn2 = self.fc2
        convs = self.dwconv.proj
        h = gelu_bn_dwconvs(conv1(x), bn1, [c.weight for c in convs],
                            [c.bias for c in convs])
        h = gelu_bn_conv(h, self.norm, conv2.weight, conv2.bias)
        return scaled_batch_norm(h, bn2, layer_scale.weight, layer_scale.bias)


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
        self.pos_embed = DWConv2d(channels, 7)  # DPE
        self.norm1 = nn.GroupNorm(1, channels)
        self.token_mixer = DMixer(channels, kernel_size, num_groups,
                                  num_heads, sr_ratio, norm_cfg)
        self.layer_scale_1 = LayerScale(channels, layer_scale_init)
        self.norm2 = nn.GroupNorm(1, channels)
        self.mlp = MSFFN(channels, mlp_ratio, norm_cfg)
        self.layer_scale_2 = LayerScale(channels, layer_scale_init)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def _forward(self, x: Tensor, pos_bias: Tensor) -> Tensor:
        if lean(self, x):  # the same by the ops: sums in place at inference,
            # each layer scale folded into its branch's last BatchNorm
            x = add_residual(self.pos_embed(x), x)
            x = add_residual(self.drop_path(self.token_mixer(
                self.norm1(x), pos_bias, self.layer_scale_1)), x)
            return add_residual(self.drop_path(
                self.mlp(self.norm2(x), self.layer_scale_2)), x)
        x = x + self.pos_embed(x)
        x = x + self.drop_path(
            self.layer_scale_1(self.token_mixer(self.norm1(x), pos_bias)))
        return x + self.drop_path(self.layer_scale_2(self.mlp(self.norm2(x))))

    def forward(self, x: Tensor, pos_bias: Tensor) -> Tensor:
        if self.with_cp and x.requires_grad:
            return cp.checkpoint(self._forward, x, pos_bias,
                                 use_reentrant=False)
        return self._forward(x, pos_bias)


class TransXNetStage(nn.Module):
    """A stage's blocks and the position bias they share, resized once per
    forward; not cached, as at detection sizes the resized biases take
    hundreds of MiB (docs/benchmarks.md)."""

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

    def forward(self, x: Tensor) -> Tensor:
        bias = resize_pos_bias(self.relative_pos_bias,
                               self.attention_shape(*x.shape[2:]))
        for block in self.blocks:
            x = block(x, bias)
        return x


@MODELS.register_module()
class TransXNet(CompiledStages, BaseModule):
    """TransXNet backbone with multi-scale outputs.

    Args:
        arch (str | dict): 't', 's', 'b' (or 'tiny', 'small', 'base'), or a
            dict with the keys of :attr:`arch_settings`.
        in_channels (int): Input image channels. Defaults to 3.
        out_indices (Sequence[int] | int): Stages to output (0-3, strides
            4/8/16/32), each through a GroupNorm(1). Defaults to (0, 1, 2, 3).
        frozen_stages (int): -1 freezes nothing, 0 the stem, k > 0 the stem
            and stages 1..k, kept in eval mode. Defaults to -1.
        norm_eval (bool): Keep every BatchNorm in eval mode while training.
            Defaults to False.
        drop_path_rate (float): Stochastic depth, growing linearly with the
            block index up to this value. Defaults to 0.
        with_cp (bool): Gradient checkpointing of every block (saves memory,
            costs time). Defaults to False.
        norm_cfg (dict): Config of the BatchNorms (e.g. ``dict(type='SyncBN')``);
            the block and output norms are GroupNorm(1) as in the paper.
        compile_cfg (bool | dict, optional): ``torch.compile`` options for
            the stages (True: its defaults). Defaults to None (eager).
        init_cfg (dict, optional): ``dict(type='Pretrained', checkpoint=PATH)``
            for the authors' checkpoint or ours; ``prefix`` picks a sub-module.
    """

    arch_settings: Dict[str, dict] = {
        **dict.fromkeys(['t', 'tiny'], dict(
            depths=[3, 3, 9, 3], channels=[48, 96, 224, 448],
            kernel_sizes=[7, 7, 7, 7], num_groups=[2, 2, 2, 2],
            sr_ratios=[8, 4, 2, 1], num_heads=[1, 2, 4, 8],
            mlp_ratios=[4, 4, 4, 4], layer_scale_init=1e-5)),
        **dict.fromkeys(['s', 'small'], dict(
            depths=[4, 4, 12, 4], channels=[64, 128, 320, 512],
            kernel_sizes=[7, 7, 7, 7], num_groups=[2, 2, 3, 4],
            sr_ratios=[8, 4, 2, 1], num_heads=[1, 2, 5, 8],
            mlp_ratios=[6, 6, 4, 4], layer_scale_init=1e-5)),
        **dict.fromkeys(['b', 'base'], dict(
            depths=[4, 4, 21, 4], channels=[76, 152, 336, 672],
            kernel_sizes=[7, 7, 7, 7], num_groups=[2, 2, 4, 4],
            sr_ratios=[8, 4, 2, 1], num_heads=[2, 4, 8, 16],
            mlp_ratios=[8, 8, 4, 4], layer_scale_init=1e-5)),
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
                 compile_cfg: Union[None, bool, dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.compile_cfg = check_compile_cfg(compile_cfg)
        self.arch = parse_arch(arch, self.arch_settings)
        self.num_stages = len(self.arch['depths'])
        self.in_channels = in_channels
        self.out_indices = parse_out_indices(out_indices, self.num_stages)
        self.frozen_stages = check_frozen_stages(frozen_stages,
                                                 self.num_stages)
        self.norm_eval = norm_eval
        self.channels = list(self.arch['channels'])

        depths = self.arch['depths']
        dpr = [drop_path_rate * i / max(sum(depths) - 1, 1)
               for i in range(sum(depths))]
        self.downsample_layers = nn.ModuleList()
        self.stages = nn.ModuleList()
        bias_hw = math.ceil(BIAS_IMAGE_SIZE / STEM_STRIDE)
        a = self.arch
        for i, (depth, ch) in enumerate(zip(depths, self.channels)):
            if i == 0:  # the stem
                down = ConvBN.downsample(in_channels, ch, 7, STEM_STRIDE,
                                         norm_cfg)
            else:
                down = ConvBN.downsample(self.channels[i - 1], ch, 3, 2,
                                         norm_cfg)
                bias_hw = math.ceil(bias_hw / 2)
            self.downsample_layers.append(down)
            start = sum(depths[:i])
            self.stages.append(TransXNetStage(
                depth, ch, a['num_heads'][i], a['sr_ratios'][i], bias_hw,
                dpr[start:start + depth], kernel_size=a['kernel_sizes'][i],
                num_groups=a['num_groups'][i], mlp_ratio=a['mlp_ratios'][i],
                layer_scale_init=a['layer_scale_init'], norm_cfg=norm_cfg,
                with_cp=with_cp))
        for i in self.out_indices:
            self.add_module(f'norm{i}', nn.GroupNorm(1, self.channels[i]))
        self.apply(self._init_module)
        self._freeze_stages()
        # Every loader passes here: the authors' keys become ours, and a
        # whole-model checkpoint without this backbone's weights stops.
        self._register_load_state_dict_pre_hook(backbone_load_hook,
                                                with_module=True)

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

    def get_layer_depth(self, param_name: str,
                        prefix: str = '') -> Tuple[int, int]:
        """(depth, number of depths) of a parameter for layer-wise
        learning-rate decay: the stem 0, the i-th block i + 1 (a stage's
        downsampling and bias as its first block), the rest the last."""
        depths = self.arch['depths']
        num_layers = sum(depths) + 2
        if not param_name.startswith(prefix):
            return num_layers - 1, num_layers
        name = param_name[len(prefix):].split('.')
        if name[0] in ('downsample_layers', 'stages'):
            stage = int(name[1])
            first = sum(depths[:stage]) + 1
            if name[0] == 'downsample_layers':
                return (first if stage else 0), num_layers
            if name[2] == 'blocks':
                return first + int(name[3]), num_layers
            return first, num_layers
        return num_layers - 1, num_layers

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        check_input(x, self.in_channels, self.downsample_layers[0].conv.weight)
        return self.run_stages(x)

    def forward_stages(self, x: Tensor) -> Tuple[Tensor, ...]:
        """The stages and output norms: what ``compile_cfg`` compiles."""
        outs = []
        for i, (down, stage) in enumerate(zip(self.downsample_layers,
                                              self.stages)):
            x = stage(down(x))
            if i in self.out_indices:
                outs.append(getattr(self, f'norm{i}')(x))
        return tuple(outs)
