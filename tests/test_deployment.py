"""ONNX export (transxnet_mm.deploy, tools/deployment/): onnxruntime gives
PyTorch's outputs at sizes and batches other than the export's, the
post-processed predictions agree, and bad input fails clearly.

The networks are one block per stage (the T channels, so the configs' necks
fit) with weights drawn so that every part of the block counts (layer
scales 1, a random position bias, random BatchNorm statistics): a random
init's 1e-5 layer scales would hide the blocks' errors.
"""
import os.path as osp
import subprocess
import sys

import pytest
import torch
from helpers import ROOT
from torch.nn.modules.batchnorm import _BatchNorm

from transxnet_mm import deploy
from transxnet_mm.ops import exporting, resize_pos_bias
from transxnet_mm.models.backbones.transxnet import TransXNetStage
from transxnet_mm.models.layers import LayerScale

pytest.importorskip('onnxruntime')

ONE_BLOCK = {'model.backbone.arch': dict(
    _delete_=True,
    depths=[1, 1, 1, 1], channels=[48, 96, 224, 448],
    kernel_sizes=[7, 7, 7, 7], num_groups=[2, 2, 2, 2],
    sr_ratios=[8, 4, 2, 1], num_heads=[1, 2, 4, 8], mlp_ratios=[4, 4, 4, 4],
    layer_scale_init=1e-5)}
CONFIGS = {
    'cls': 'configs/transxnet-t_in1k.py',
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
        head = getattr(model, 'bbox_head', None)
        if hasattr(head, 'retina_cls'):  # scores around 0.5: many boxes
            head.retina_cls.bias.zero_()
    return model, task


_EXPORTED = {}


def exported(kind: str, tmp_dir: str):
    """The stressed one-block model of ``kind``, its task and its --dynamic
    ONNX file in onnxruntime, exported at 64x96 once per test module."""
    if kind not in _EXPORTED:
        model, task = stressed(CONFIGS[kind])
        path = osp.join(tmp_dir, f'{kind}.onnx')
        example = torch.randn(1, 3, 64, 96,
                              generator=torch.Generator().manual_seed(1))
        deploy.export(model, task, example, path, dynamic=True)
        _EXPORTED[kind] = model, task, deploy.OnnxModel(path)
    return _EXPORTED[kind]


@pytest.fixture(scope='module')
def onnx_dir(tmp_path_factory):
    yield str(tmp_path_factory.mktemp('onnx'))
    _EXPORTED.clear()  # the models and sessions are not kept for the suite


@pytest.mark.slow
@pytest.mark.parametrize('kind', list(CONFIGS))
def test_dynamic_export_matches_pytorch(kind, onnx_dir):
    """One --dynamic file, exported at 64x96, gives PyTorch's outputs at
    other sizes (one not a multiple of 32) and batches of 1 and 2."""
    model, task, session = exported(kind, onnx_dir)
    assert session.output_names == task.output_names()
    gen = torch.Generator().manual_seed(2)
    for batch, h, w in deploy.verify_sizes(64, 96):
        x = torch.randn(batch, 3, h, w, generator=gen)
        ref = deploy.torch_outputs(model, task, x)
        abs_diff, rel_diff = deploy.differences(ref, session(x))
        assert rel_diff < deploy.RTOL, (kind, batch, h, w, abs_diff)


@pytest.mark.slow
def test_onnx_detections_equal_pytorch(onnx_dir, coco_sample):
    """RetinaNet on a real COCO image through the config's pipeline: the
    onnxruntime file plus mmdet's post-processing gives PyTorch's
    detections (same labels, boxes within 1 px)."""
    model, task, session = exported('retinanet', onnx_dir)
    image = osp.join(coco_sample, 'val2017', '000000074646.jpg')
    ref = deploy.predict_torch(task, [image])[0].pred_instances
    out = deploy.predict_onnx(session, task, [image])[0].pred_instances
    assert len(ref) == len(out) > 10
    for box, label in zip(out.bboxes, out.labels):
        same = ref.bboxes[ref.labels == label]
        assert (same - box).abs().amax(1).min() <= 1, (box, label)


@pytest.mark.slow
def test_onnx_segmentation_equal_pytorch(onnx_dir, coco_sample):
    """Semantic FPN: the class map from onnxruntime's logits (mmseg's
    resize and argmax) is PyTorch's."""
    model, task, session = exported('seg', onnx_dir)
    image = osp.join(coco_sample, 'val2017', '000000074646.jpg')
    ref = deploy.predict_torch(task, [image])[0].pred_sem_seg.data
    out = deploy.predict_onnx(session, task, [image])[0].pred_sem_seg.data
    assert ref.shape == out.shape
    assert (ref == out).float().mean() > 0.999


@pytest.mark.slow
@pytest.mark.parametrize('size,out', [((3136, 49), (60800, 950)),
                                      ((784, 49), (15200, 950)),
                                      ((196, 49), (1024, 256)),
                                      ((10, 7), (5, 3))])
def test_exported_bicubic_equals_pytorch(size, out):
    """The export form of the position biases' resize (the weights of the
    runtime's separable resize) gives PyTorch's result: 800x1216 stages 1-2, 512x512 stage 3, a shrink."""
    torch.manual_seed(0)
    x = torch.randn(1, 2, *size)
    expected = torch.nn.functional.interpolate(
        x, size=out, mode='bicubic', align_corners=False)
    with exporting():
        got = resize_pos_bias(x, out)
    err = (got - expected).abs().max() / expected.abs().max()
    assert err < 1e-5, err


@pytest.mark.slow
def test_static_file_rejects_other_shapes(onnx_dir):
    """A file exported without --dynamic says which shape it takes."""
    model, task = stressed(CONFIGS['cls'])
    path = osp.join(onnx_dir, 'static.onnx')
    deploy.export(model, task, torch.randn(1, 3, 64, 64), path)
    session = deploy.OnnxModel(path)
    assert session(torch.randn(1, 3, 64, 64))[0].shape == (1, 1000)
    with pytest.raises(ValueError, match='exported without --dynamic'):
        session(torch.randn(1, 3, 96, 64))


def test_bad_input_is_named():
    with pytest.raises(FileNotFoundError, match='nowhere.pth does not exist'):
        deploy.load_model(osp.join(ROOT, CONFIGS['cls']), 'nowhere.pth')
    import mmdet
    resnet = osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs',
                      'retinanet', 'retinanet_r50_fpn_1x_coco.py')
    with pytest.raises(ValueError, match='not one of our configs'):
        deploy.load_model(resnet)
    with pytest.raises(ValueError, match='at least 64'):
        deploy.check_shape([32, 800])
    with pytest.raises(ValueError, match='takes H W'):
        deploy.check_shape([512])


@pytest.mark.slow
def test_cli_error_is_one_line(tmp_path):
    """The tool stops with the problem and the fix, not a traceback."""
    out = subprocess.run(
        [sys.executable, 'tools/deployment/export_onnx.py',
         CONFIGS['retinanet'], str(tmp_path / 'missing.pth'), '--out',
         str(tmp_path / 'x.onnx')],
        cwd=ROOT, text=True, capture_output=True)
    assert out.returncode != 0
    assert 'missing.pth does not exist' in out.stderr
    assert 'Traceback' not in out.stderr
