"""tools/analysis_tools/benchmark_train.py: the model it times is the one the
config trains, the authors' backbone in it holds the same weights, and its
random batches have valid ground truth."""
import os.path as osp
import subprocess
import sys

import pytest
import torch
from helpers import (AUTHORS_FILE, ROOT, config_file, load_tool,
                     needs_authors_file)
from mmengine.config import Config

TOOL = osp.join(ROOT, 'tools', 'analysis_tools', 'benchmark_train.py')


@pytest.fixture(scope='module')
def tool():
    return load_tool('analysis_tools', 'benchmark_train.py')


def built(tool, name: str, authors: bool = False):
    cfg = Config.fromfile(config_file(name))
    cfg.model.backbone.drop_path_rate = 0.  # the same computation in both
    torch.manual_seed(0)
    return tool.build_for_training(cfg, 'cpu',
                                   AUTHORS_FILE if authors else None)


@needs_authors_file
@pytest.mark.parametrize('name', ['retinanet_transxnet_t',
                                  'fpn_transxnet_t_ade20k'])
def test_authors_backbone_trains_the_same_model(tool, name):
    """Same seed, one model with our backbone and one with the authors':
    SyncBN reverted, the same features, and one training iteration on the
    same batch gives the same losses and the same updated neck weights."""
    (ours, ours_opt, scope), (theirs, their_opt, _) = (
        built(tool, name), built(tool, name, authors=True))
    assert type(theirs.backbone).__name__ == 'AuthorsBackbone'
    bns = {type(m).__name__ for m in ours.modules()
           if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)}
    assert 'SyncBatchNorm' not in bns and '_BatchNormXd' in bns
    x = torch.randn(1, 3, 64, 96)
    ours.eval(), theirs.eval()
    with torch.no_grad():
        for a, b in zip(ours.backbone(x), theirs.backbone(x), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    batch = tool.random_batch(scope, ours, (64, 96), 2)
    losses = []
    for model, wrapper in ((ours, ours_opt), (theirs, their_opt)):
        if scope == 'mmseg':  # as the tool does: no padding to the crop
            model.data_preprocessor.size = (64, 96)
        model.train()
        torch.manual_seed(1)  # the same dropout in the heads
        losses.append(model.train_step(batch, wrapper))
    assert losses[0].keys() == losses[1].keys()
    for key in losses[0]:
        torch.testing.assert_close(losses[0][key], losses[1][key],
                                   rtol=1e-3, atol=1e-5)
    neck = [dict(m.neck.named_parameters()) for m in (ours, theirs)]
    for key in neck[0]:
        torch.testing.assert_close(neck[0][key], neck[1][key],
                                   rtol=1e-3, atol=1e-5)


def test_random_batch_has_valid_boxes_and_masks(tool):
    """Mask R-CNN-T: 5 boxes of at least 32 pixels inside each image, the
    masks filling them, labels among the head's classes; the iteration's
    losses are finite."""
    model, wrapper, scope = built(tool, 'mask_rcnn_transxnet_t')
    h, w = 96, 128
    batch = tool.random_batch(scope, model, (h, w), 2)
    classes = model.roi_head.bbox_head.num_classes
    for sample in batch['data_samples']:
        gt = sample.gt_instances
        boxes = gt.bboxes
        assert len(boxes) == 5
        assert (boxes[:, 2:] - boxes[:, :2]).min() >= 31
        assert boxes[:, 2].max() < w and boxes[:, 3].max() < h
        assert gt.labels.min() >= 0 and gt.labels.max() < classes
        areas = torch.from_numpy(gt.masks.masks.sum((1, 2)).astype('int64'))
        x1, y1, x2, y2 = boxes.int().T
        assert torch.equal(areas, (x2 - x1) * (y2 - y1))
    losses = model.train_step(batch, wrapper)
    assert {'loss_rpn_cls', 'loss_mask'} <= set(losses)
    assert all(torch.isfinite(v).all() for v in losses.values())


@pytest.mark.parametrize('argv,message', [
    (['--batch', '1'], 'cannot train on one image'),
    (['--warmup', '1'], 'the first two iterations measure the memory'),
    (['--device', 'cuda'], 'no GPU is visible'),
    (['--rounds', '0'], '--rounds must be at least 1'),
])
def test_bad_arguments_are_named(tool, monkeypatch, capsys, argv, message):
    if argv[0] == '--device' and torch.cuda.is_available():
        pytest.skip('a GPU is visible')
    monkeypatch.setattr(sys, 'argv', ['benchmark_train.py', 'x.py', *argv])
    with pytest.raises(SystemExit):
        tool.parse_args()
    assert message in capsys.readouterr().err


def test_rounds_alternate_the_columns_and_pool_their_iterations(
        tool, monkeypatch):
    calls = []

    def column(args, env, impl, busy):
        calls.append(impl)
        return {'model': dict(times=[len(calls)], peak_mb=len(calls))}

    monkeypatch.setattr(tool, 'run_column', column)
    monkeypatch.setattr(sys, 'argv', ['benchmark_train.py', 'x.py',
                                      '--rounds', '3'])
    res = tool.run_rounds(tool.parse_args(), {}, ['authors', 'ours'], False)
    assert calls == ['authors', 'ours'] * 3
    assert res['authors']['model'] == dict(times=[1, 3, 5], peak_mb=1)
    assert res['ours']['model'] == dict(times=[2, 4, 6], peak_mb=2)


@pytest.mark.slow
@needs_authors_file
def test_prints_the_table_for_both_columns():
    """The command a user runs: Semantic FPN-T inference, the whole model
    and the backbone alone (training iterations: the test above)."""
    for mode in (['--eval'], ):
        out = subprocess.run(
            [sys.executable, TOOL, config_file('fpn_transxnet_t_ade20k'),
             '--authors-backbone', AUTHORS_FILE, '--shape', '64', '64',
             '--iters', '1', *mode], capture_output=True, text=True,
            cwd=ROOT, check=True).stdout
        rows = {line.split('|')[1].strip(): line.split('|')[2:-1]
                for line in out.splitlines() if line.startswith('| ')}
        header = [c.strip() for c in rows.pop('part')]
        assert header[-1] == 'memory ratio' and 'speed-up' in header
        expected = ['test_step', 'backbone only'] if mode else ['train_step']
        assert list(rows) == expected
        for cells in rows.values():
            values = dict(zip(header, (c.strip() for c in cells)))
            assert float(values['ours ms']) > 0
            assert float(values['authors peak MB']) > 0
