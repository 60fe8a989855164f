"""Detection configs (RetinaNet, Mask R-CNN): what the built models,
optimizers, schedules and pipelines are, against the paper's settings
(conftest's PAPER_* tables); a real run on the COCO sample."""
import json
import glob
import os.path as osp

import numpy as np
import pytest
import torch
from helpers import (ROOT, assert_warmup_then_exact, backbone_facts,
                     build_structure, coco_dataset, fixed_batch_losses,
                     keep_ratio_size, linear_drop_path, load_config, lr_curve,
                     run_tool, step_schedule, variant_of, weight_decays)
from paper import (AUTHORS_MODEL_PARAMS, PAPER_GPUS, PAPER_MASK_RCNN,
                   PAPER_RESULTS, PAPER_RETINANET, PAPER_VARIANTS)
from mmengine.config import Config

from benchmark_utils import complexity, dummy_inputs

from transxnet_mm.apis import build_model

DEMO = osp.join(ROOT, 'configs/demo/mask_rcnn_transxnet_t_coco_sample.py')
NAMES = [f'{kind}_transxnet_{v}' for kind in ('retinanet', 'mask_rcnn')
         for v in 'tsb']


def recipe(name: str) -> dict:
    return PAPER_RETINANET if name.startswith('retinanet') else \
        PAPER_MASK_RCNN


@pytest.mark.parametrize('name', NAMES)
def test_params_are_the_papers(name):
    """Counted on the built model: the paper's Tables IV / V (0.1 M) and
    the authors' model measured in mmdet 3 (0.01 M)."""
    model, _ = build_structure(load_config(name))
    params = sum(p.numel() for p in model.parameters()) / 1e6
    assert round(params, 1) == PAPER_RESULTS[name]['params']
    assert round(params, 2) == AUTHORS_MODEL_PARAMS[name]


@pytest.mark.parametrize('name', NAMES)
def test_backbone_is_the_papers(name):
    """The built backbone: the variant's blocks and channels, drop path
    growing linearly to the paper's detection rate, SyncBN, and the authors'
    ImageNet checkpoint of that variant."""
    model, _ = build_structure(load_config(name))
    facts = backbone_facts(model.backbone)
    variant = variant_of(name)
    assert facts['variant'] == variant
    rate = PAPER_VARIANTS[variant]['drop_path_dense']
    assert facts['drop_path'] == pytest.approx(
        linear_drop_path(rate, sum(facts['depths'])))
    assert facts['drop_path'][-1] == pytest.approx(rate)
    assert facts['batch_norms'] == {'SyncBatchNorm'}
    assert osp.basename(facts['checkpoint']) == f'transx-{variant}.pth.tar'


@pytest.mark.parametrize('name', NAMES)  # S, B: slow (conftest)
def test_built_model_runs_with_the_papers_feature_strides(name):
    """A real forward: the backbone gives the paper's strides (RetinaNet
    drops stride 4) with the stage channels, the FPN five 256-channel
    levels, and the outputs are finite."""
    cfg = load_config(name)
    if 'rpn' in cfg.model.test_cfg:  # 20 proposals, not 1000: a quick run
        cfg.model.test_cfg.rpn.update(nms_pre=20, max_per_img=20)
    model, scope = build_model(cfg), cfg.default_scope
    paper = recipe(name)
    captured = {}
    for part in ('backbone', 'neck'):
        getattr(model, part).register_forward_hook(
            lambda m, i, out, part=part: captured.setdefault(part, out))
    size = 128  # the largest FPN stride: exact strides down to 1x1
    with torch.no_grad():
        inputs, kwargs = dummy_inputs(scope, (size, 160))
        outs = model(inputs, **kwargs)
    flat = [t for level in outs for t in (level if isinstance(level, (
        list, tuple)) else [level])]
    assert flat and all(torch.isfinite(t).all() for t in flat)
    channels = PAPER_VARIANTS[variant_of(name)]['channels']
    strides = [size // f.shape[2] for f in captured['backbone']]
    assert tuple(strides) == paper['out_strides']
    stage = {4: 0, 8: 1, 16: 2, 32: 3}  # section 2: strides 4-32
    assert [f.shape[1] for f in captured['backbone']] == [
        channels[stage[s]] for s in strides]
    assert tuple(size // f.shape[2] for f in captured['neck']) == \
        paper['fpn_strides']
    assert {f.shape[1] for f in captured['neck']} == {paper['fpn_out']}


@pytest.mark.parametrize('name', NAMES)
def test_batch_schedule_and_precision_are_the_papers(name):
    """Total batch (per GPU x the paper's 8 GPUs, also the config's base for
    --auto-scale-lr); the lr the built schedulers give at the warm-up, the
    decay epochs and the end of the built train loop (an epoch of 100
    iterations stands in for COCO's ~7330); fp32, no gradient clipping, no
    accumulation."""
    cfg = load_config(name)
    paper = recipe(name)
    assert cfg.train_dataloader.batch_size * PAPER_GPUS == \
        cfg.auto_scale_lr.base_batch_size == paper['batch']
    epoch = 100
    points = {0, 1, 250, 498, 499, 500, epoch * paper['epochs'] - 1}
    for m in paper['milestones']:
        points |= {m * epoch - 1, m * epoch}
    lrs, loop = lr_curve(cfg, epoch, points)
    assert loop.max_epochs == paper['epochs']
    assert_warmup_then_exact(lrs, step_schedule(paper, epoch),
                             paper['warmup_iters'])
    wrapper, _ = weight_decays(torch.nn.Linear(1, 1), cfg)
    assert type(wrapper).__name__ == 'OptimWrapper'  # not AmpOptimWrapper
    assert wrapper.clip_grad_kwargs is None
    assert wrapper._accumulative_counts == 1  # one step per batch of 16


@pytest.mark.parametrize('name', [n for n in NAMES if 'retinanet' in n])
def test_retinanet_optimizer_has_no_per_parameter_rules(name):
    model, _ = build_structure(load_config(name))
    wrapper, decay = weight_decays(model, load_config(name))
    opt = wrapper.optimizer
    assert type(opt).__name__ == 'AdamW'
    assert opt.defaults['lr'] == PAPER_RETINANET['lr']
    assert set(decay.values()) == {PAPER_RETINANET['weight_decay']}


def test_mask_rcnn_optimizer_decay_rules_match_the_authors():
    """The authors' custom_keys={'norm': decay 0}: the GroupNorms (block and
    output norms) and the BatchNorm of each MS-FFN ('mlp.norm', the same
    name in ours), with that one key."""
    cfg = load_config('mask_rcnn_transxnet_t')
    model, _ = build_structure(cfg)
    wrapper, decay = weight_decays(model, cfg)
    opt = wrapper.optimizer
    assert type(opt).__name__ == 'AdamW'
    assert opt.defaults['lr'] == PAPER_MASK_RCNN['lr']
    wd = PAPER_MASK_RCNN['weight_decay']
    no_decay = {n for n, d in decay.items() if d == 0}
    expected = {
        n for n in decay
        if '.norm' in n.replace('backbone.norm', 'backbone..norm')
    }
    assert no_decay == expected
    blocks = sum(PAPER_VARIANTS['t']['depths'])
    assert len([n for n in no_decay if '.mlp.norm.' in n]) == 2 * blocks
    assert len([n for n in no_decay if '.blocks.' in n and (
        '.norm1.' in n or '.norm2.' in n)]) == 4 * blocks
    assert {n for n in no_decay if n.startswith('backbone.norm')} == {
        f'backbone.norm{i}.{w}' for i in range(4) for w in ('weight', 'bias')}
    assert all(d == wd for n, d in decay.items() if n not in no_decay)
    # BatchNorms elsewhere and the relative position biases keep decay.
    assert decay['backbone.stages.0.relative_pos_bias'] == wd
    assert decay['backbone.stages.0.blocks.0.token_mixer.proj.2.weight'] == wd


@pytest.mark.parametrize('name', ['retinanet_transxnet_t',
                                  'mask_rcnn_transxnet_t'])
def test_pipelines_resize_flip_and_pad_as_the_paper(name, coco_sample):
    """The built train and test pipelines on real COCO images: resized to
    fit (1333, 800) keeping the ratio, the train one flipped half the time;
    the data preprocessor pads a batch to multiples of 32."""
    from mmengine.registry import init_default_scope
    from mmdet.registry import MODELS
    cfg = load_config(name)
    init_default_scope('mmdet')
    paper = recipe(name)
    train = coco_dataset(cfg.train_dataloader.dataset, coco_sample)
    test = coco_dataset(cfg.test_dataloader.dataset, coco_sample)
    for i in range(2):
        for out in (train[i], test[i]):
            meta = out['data_samples'].metainfo
            size = keep_ratio_size(meta['ori_shape'], paper['scale'])
            assert tuple(out['inputs'].shape[1:]) == size == meta['img_shape']
    np.random.seed(0)  # mmcv's RandomFlip draws from numpy
    flips = [train[0]['data_samples'].flip for _ in range(16)]
    assert 0 < sum(flips) < 16  # P(all equal) = 2 ** -15
    assert not test[0]['data_samples'].metainfo.get('flip', False)
    preprocessor = MODELS.build(cfg.model.data_preprocessor)
    samples = [train[0], train[1]]
    batch = preprocessor(dict(inputs=[d['inputs'] for d in samples],
                              data_samples=[d['data_samples']
                                            for d in samples]))
    h, w = batch['inputs'].shape[2:]
    div = paper['size_divisor']
    assert h % div == 0 and w % div == 0
    assert h - max(d.img_shape[0] for d in batch['data_samples']) < div


@pytest.mark.slow
def test_flops_match_paper_at_800x1280():
    """Paper: RetinaNet-T 187 G, counted without the attention products."""
    paper = PAPER_RESULTS['retinanet_transxnet_t']['flops']
    model = build_model(load_config('retinanet_transxnet_t'))
    scope = model.cfg.default_scope
    res = complexity(model, *dummy_inputs(scope, (800, 1280)))
    assert abs(res['flops_paper'] / 1e9 - paper) / paper < 0.05
    assert res['flops_with_attention'] > res['flops_paper'] * 1.1


@pytest.mark.slow
def test_mask_rcnn_loss_falls_on_a_fixed_batch(coco_sample):
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner
    cfg = Config.fromfile(DEMO)
    init_default_scope('mmdet')
    torch.manual_seed(0)
    cfg.train_dataloader.dataset.data_root = coco_sample + '/'
    resize, = [t for t in cfg.train_dataloader.dataset.pipeline
               if t.type == 'Resize']
    resize.scale = (320, 224)  # smaller than the demo: a test, not a run
    batch = next(iter(Runner.build_dataloader(cfg.train_dataloader, seed=0)))
    losses = fixed_batch_losses(build_model(cfg, inference=False), batch,
                                lr=1e-4, weight_decay=0.05)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert min(losses[-2:]) < losses[0] * 0.9, losses


@pytest.mark.slow
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


@pytest.mark.slow
def test_get_flops_and_benchmark_tools_run():
    cfg = osp.join(ROOT, 'configs/retinanet_transxnet_t.py')
    params = AUTHORS_MODEL_PARAMS['retinanet_transxnet_t']
    out = run_tool(['tools/analysis_tools/get_flops.py', cfg,
                    '--shape', '256', '320'])
    assert f'Params: {params:.2f} M' in out and 'paper convention' in out
    out = run_tool(['tools/analysis_tools/benchmark.py', cfg,
                    '--shape', '128', '--runs', '2', '--warmup', '1'])
    assert 'images/s' in out
