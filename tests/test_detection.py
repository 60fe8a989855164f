"""Detection configs: build, parameter counts, optimizer rules, a real run."""
import json
import glob
import os.path as osp

import pytest
import torch
from conftest import ROOT, config_file, fixed_batch_losses, run_tool
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper

from transxnet_mm.analysis import build_model, complexity, dummy_inputs

# Paper Tables IV and V (M params).
PAPER_PARAMS = {
    'retinanet_transxnet_t': 22.4, 'retinanet_transxnet_s': 36.6,
    'retinanet_transxnet_b': 58.0, 'mask_rcnn_transxnet_t': 32.5,
    'mask_rcnn_transxnet_s': 46.5, 'mask_rcnn_transxnet_b': 67.6,
}
DEMO = osp.join(ROOT, 'configs/demo/mask_rcnn_transxnet_t_coco_sample.py')


def config(name: str) -> Config:
    return Config.fromfile(config_file(name))


@pytest.mark.parametrize('name', sorted(PAPER_PARAMS))
def test_config_builds_runs_and_matches_paper_params(name):
    cfg = config(name)
    assert cfg.model.backbone.init_cfg.checkpoint.endswith(
        f'transx-{name[-1]}.pth.tar')
    model, scope = build_model(cfg)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    assert abs(params - PAPER_PARAMS[name]) < 0.1
    with torch.no_grad():
        inputs, kwargs = dummy_inputs(scope, (128, 160))
        outs = model(inputs, **kwargs)
    flat = [t for level in outs for t in (level if isinstance(level, (
        list, tuple)) else [level])]
    assert flat and all(torch.isfinite(t).all() for t in flat)


@pytest.mark.parametrize('variant,drop_path', [('t', 0.1), ('s', 0.2),
                                               ('b', 0.3)])
def test_paper_backbone_settings(variant, drop_path):
    for kind in ('retinanet', 'mask_rcnn'):
        cfg = config(f'{kind}_transxnet_{variant}')
        bb = cfg.model.backbone
        assert (bb.arch, bb.drop_path_rate) == (variant, drop_path)
        assert bb.norm_cfg.type == 'SyncBN'
        assert bb.out_indices == ((1, 2, 3) if kind == 'retinanet' else
                                  (0, 1, 2, 3))
        assert cfg.train_dataloader.batch_size * 8 == \
            cfg.auto_scale_lr.base_batch_size == 16
        assert cfg.train_cfg.max_epochs == 12
        warmup, step = cfg.param_scheduler
        assert (warmup.type, warmup.start_factor, warmup.end) == \
            ('LinearLR', 0.001, 500)
        assert (step.milestones, step.gamma) == ([8, 11], 0.1)
        assert cfg.optim_wrapper.get('clip_grad') is None


def _groups(name):
    cfg = config(name)
    model, _ = build_model(cfg)
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    names = {id(p): n for n, p in model.named_parameters()}
    decay = {}
    for group in wrapper.optimizer.param_groups:
        for p in group['params']:
            decay[names[id(p)]] = group['weight_decay']
    assert len(decay) == len(names)
    return wrapper.optimizer, decay


def test_retinanet_optimizer_has_no_per_parameter_rules():
    opt, decay = _groups('retinanet_transxnet_t')
    assert type(opt).__name__ == 'AdamW'
    assert opt.defaults['lr'] == 1e-4
    assert set(decay.values()) == {1e-4}


def test_mask_rcnn_optimizer_decay_rules_match_the_authors():
    """The authors' custom_keys={'norm': decay 0}: the GroupNorms (block and
    output norms) and the BatchNorm of each MS-FFN ('mlp.norm', the same
    name in ours), with that one key."""
    opt, decay = _groups('mask_rcnn_transxnet_t')
    assert type(opt).__name__ == 'AdamW' and opt.defaults['lr'] == 1e-4
    no_decay = {n for n, wd in decay.items() if wd == 0}
    expected = {
        n for n in decay
        if '.norm' in n.replace('backbone.norm', 'backbone..norm')
    }
    assert no_decay == expected
    assert len([n for n in no_decay if '.mlp.norm.' in n]) == 2 * 18
    assert len([n for n in no_decay if '.blocks.' in n and (
        '.norm1.' in n or '.norm2.' in n)]) == 4 * 18
    assert {n for n in no_decay if n.startswith('backbone.norm')} == {
        f'backbone.norm{i}.{w}' for i in range(4) for w in ('weight', 'bias')}
    assert all(wd == 0.05 for n, wd in decay.items() if n not in no_decay)
    # BatchNorms elsewhere and the relative position biases keep decay.
    assert decay['backbone.stages.0.relative_pos_bias'] == 0.05
    assert decay['backbone.stages.0.blocks.0.token_mixer.proj.2.weight'] == 0.05


def test_flops_match_paper_at_800x1280():
    """Paper: RetinaNet-T 187 G, counted without the attention products."""
    model, scope = build_model(config('retinanet_transxnet_t'))
    res = complexity(model, *dummy_inputs(scope, (800, 1280)))
    assert abs(res['flops_paper'] / 1e9 - 187) / 187 < 0.05
    assert res['flops_with_attention'] > res['flops_paper'] * 1.1


def test_mask_rcnn_loss_falls_on_a_fixed_batch(coco_sample):
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner
    from mmdet.registry import MODELS
    cfg = Config.fromfile(DEMO)
    init_default_scope('mmdet')
    torch.manual_seed(0)
    cfg.train_dataloader.dataset.data_root = coco_sample + '/'
    resize = cfg.train_dataloader.dataset.pipeline[2]
    assert resize.type == 'Resize'
    resize.scale = (320, 224)  # smaller than the demo: a test, not a run
    batch = next(iter(Runner.build_dataloader(cfg.train_dataloader, seed=0)))
    losses = fixed_batch_losses(MODELS.build(cfg.model), batch, lr=1e-4,
                                weight_decay=0.05)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert min(losses[-2:]) < losses[0] * 0.9, losses


def test_train_evaluate_and_test_on_real_sample(coco_sample, tmp_path):
    """tools/train.py: 1 epoch of Mask R-CNN-T with bbox and segm COCO AP;
    tools/test.py on the checkpoint it saved."""
    work = str(tmp_path / 'work')
    small = ['--cfg-options', 'train_cfg.max_epochs=1',
             'train_cfg.val_interval=1', 'default_hooks.checkpoint.interval=1']
    log = run_tool(['tools/train.py', DEMO, '--work-dir', work] + small)
    assert 'coco/bbox_mAP' in log and 'coco/segm_mAP' in log
    ckpt = osp.join(work, 'epoch_1.pth')
    assert osp.isfile(ckpt)
    log = run_tool(['tools/test.py', DEMO, ckpt, '--work-dir',
                    str(tmp_path / 'test')])
    metrics = glob.glob(str(tmp_path / 'test' / '*' / '*.json'))
    assert metrics, log[-2000:]
    with open(metrics[0]) as f:
        result = json.load(f)
    assert 'coco/bbox_mAP' in result and 'coco/segm_mAP' in result


def test_get_flops_and_benchmark_tools_run():
    cfg = osp.join(ROOT, 'configs/retinanet/retinanet_transxnet_t.py')
    out = run_tool(['tools/analysis_tools/get_flops.py', cfg,
                    '--shape', '256', '320'])
    assert 'Params: 22.44 M' in out and 'paper convention' in out
    out = run_tool(['tools/analysis_tools/benchmark.py', cfg,
                    '--shape', '128', '--runs', '2', '--warmup', '1'])
    assert 'images/s' in out
