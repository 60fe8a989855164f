"""ONNX export (transxnet_mm.deploy, tools/deployment/): onnxruntime gives
PyTorch's outputs at sizes and batches other than the export's, the
post-processed predictions agree, and bad input fails clearly.

The networks are one block per stage (the T channels, so the configs' necks
fit) with weights drawn so that every part of the block counts (layer
scales 1, a random position bias, random BatchNorm statistics): a random
init's 1e-5 layer scales would hide the blocks' errors.
"""
import os.path as osp

import pytest
import torch
from conftest import ROOT, run_tool
from torch.nn.modules.batchnorm import _BatchNorm

from transxnet_mm import deploy
from transxnet_mm.models.transxnet import LayerScale, TransXNetStage

pytest.importorskip('onnxruntime')

ONE_BLOCK = {'model.backbone.arch': dict(
    _delete_=True,
    depths=[1, 1, 1, 1], channels=[48, 96, 224, 448],
    kernel_sizes=[7, 7, 7, 7], num_groups=[2, 2, 2, 2],
    sr_ratios=[8, 4, 2, 1], num_heads=[1, 2, 4, 8], mlp_ratios=[4, 4, 4, 4],
    layer_scale_init=1e-5)}
CONFIGS = {
    'cls': 'configs/transxnet_t_in1k.py',
    'seg': 'configs/fpn_transxnet_t_ade20k.py',
    'retinanet': 'configs/retinanet_transxnet_t.py',
}


def stressed(config: str):
    """One-block model of ``config`` whose blocks all matter."""
    _, model, task = deploy.load_model(osp.join(ROOT, config),
                                       cfg_options=ONE_BLOCK)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.backbone.modules():
            if isinstance(m, TransXNetStage):  # its position bias
                for p in m.parameters(recurse=False):
                    p.copy_(torch.randn(p.shape, generator=gen))
            elif isinstance(m, LayerScale):
                m.weight.fill_(0.5)
            elif isinstance(m, _BatchNorm):
                m.running_mean.normal_(0, 0.1, generator=gen)
                m.running_var.uniform_(0.5, 2, generator=gen)
    return model, task


@pytest.mark.parametrize('kind', list(CONFIGS))
def test_dynamic_export_matches_pytorch(kind, tmp_path):
    """One --dynamic file, exported at 64x96, runs other sizes (not
    multiples of 32) and batches with PyTorch's outputs."""
    model, task = stressed(CONFIGS[kind])
    path = str(tmp_path / f'{kind}.onnx')
    gen = torch.Generator().manual_seed(1)
    deploy.export(model, task, torch.randn(1, 3, 64, 96, generator=gen),
                  path, dynamic=True)
    session = deploy.OnnxModel(path)
    assert session.output_names == task.output_names()
    for batch, h, w in deploy.verify_sizes(64, 96):
        x = torch.randn(batch, 3, h, w, generator=gen)
        ref = deploy.torch_outputs(model, task, x)
        abs_diff, rel_diff = deploy.differences(ref, session(x))
        assert rel_diff < deploy.RTOL, (kind, batch, h, w, abs_diff)
