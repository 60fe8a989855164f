"""Semantic FPN configs: build, parameter counts, the paper's settings, the
AlignResize transform, the lr schedule and a real run on the ADE20K-layout
sample."""
import glob
import importlib.util
import json
import math
import os.path as osp

import numpy as np
import pytest
import torch
from conftest import ROOT, config_file, fixed_batch_losses, run_tool
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import PARAM_SCHEDULERS

from transxnet_mm.analysis import build_model
from transxnet_mm.transforms import AlignResize

# Measured with the authors' model inside mmseg 1.2.2 (M params).
PARAMS = {'t': 16.60, 's': 30.62, 'b': 51.66}
CHANNELS = {'t': [48, 96, 224, 448], 's': [64, 128, 320, 512],
            'b': [76, 152, 336, 672]}
DROP_PATH = {'t': 0.1, 's': 0.2, 'b': 0.3}
DEMO = osp.join(ROOT, 'configs/demo/fpn_transxnet_t_ade20k_sample.py')
CONVERTER = osp.join(ROOT, 'tools/dataset_converters/coco_to_ade20k_sample.py')


def config(variant: str) -> Config:
    return Config.fromfile(config_file(f'fpn_transxnet_{variant}_ade20k'))


@pytest.mark.parametrize('variant', sorted(PARAMS))
def test_config_builds_runs_and_matches_params(variant):
    model, scope = build_model(config(variant))
    assert scope == 'mmseg'
    params = sum(p.numel() for p in model.parameters()) / 1e6
    assert round(params, 2) == PARAMS[variant]
    with torch.no_grad():
        logits = model(torch.rand(1, 3, 128, 128))  # tensor mode
    assert logits.shape == (1, 150, 32, 32)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize('variant', sorted(PARAMS))
def test_paper_settings(variant):
    cfg = config(variant)
    model = cfg.model
    assert model.pretrained is None
    bb = model.backbone
    assert (bb.type, bb.arch, bb.out_indices, bb.drop_path_rate) == \
        ('TransXNet', variant, (0, 1, 2, 3), DROP_PATH[variant])
    assert bb.norm_cfg.type == 'SyncBN'
    assert bb.init_cfg == dict(
        type='Pretrained', checkpoint=f'checkpoints/transx-{variant}.pth.tar')
    assert (model.neck.type, model.neck.in_channels, model.neck.out_channels,
            model.neck.num_outs) == ('FPN', CHANNELS[variant], 256, 4)
    head = model.decode_head
    assert (head.type, head.channels, head.dropout_ratio, head.num_classes,
            head.norm_cfg.type) == ('FPNHead', 128, 0.1, 150, 'SyncBN')
    assert model.data_preprocessor.size == (512, 512)
    opt = cfg.optim_wrapper
    assert opt.optimizer == dict(type='AdamW', lr=2e-4, weight_decay=1e-4)
    assert opt.get('clip_grad') is None and 'paramwise_cfg' not in opt
    assert cfg.train_cfg.max_iters == 80000
    assert cfg.train_dataloader.batch_size * 8 == \
        cfg.auto_scale_lr.base_batch_size == 32
    train = [t.type for t in cfg.train_dataloader.dataset.pipeline]
    assert train == ['LoadImageFromFile', 'LoadAnnotations', 'RandomResize',
                     'RandomCrop', 'RandomFlip', 'PhotoMetricDistortion',
                     'PackSegInputs']
    resize, crop = cfg.train_dataloader.dataset.pipeline[2:4]
    assert (resize.scale, resize.ratio_range, resize.keep_ratio) == \
        ((2048, 512), (0.5, 2.0), True)
    assert (crop.crop_size, crop.cat_max_ratio) == ((512, 512), 0.75)
    for loader in (cfg.val_dataloader, cfg.test_dataloader):
        align = loader.dataset.pipeline[1]
        assert (align.type, align.scale, align.keep_ratio,
                align.size_divisor) == ('AlignResize', (2048, 512), True, 32)
    assert cfg.test_pipeline[1].type == 'AlignResize'  # used by inference
    assert cfg.val_evaluator.type == 'IoUMetric'


def test_ade20k_root_is_set_in_one_place(monkeypatch):
    assert config('t').train_dataloader.dataset.data_root == \
        'data/ade/ADEChallengeData2016'
    monkeypatch.setenv('ADE20K_ROOT', '/datasets/ade')
    cfg = config('b')
    roots = {loader.dataset.data_root for loader in (
        cfg.train_dataloader, cfg.val_dataloader, cfg.test_dataloader)}
    assert roots == {'/datasets/ade'}


def _lr_schedule(cfg: Config, at: set) -> dict:
    """The lr of each iteration in ``at``, stepping mmengine's schedulers
    built from the config as the runner's ParamSchedulerHook does."""
    wrapper = build_optim_wrapper(torch.nn.Linear(2, 2), cfg.optim_wrapper)
    schedulers = [PARAM_SCHEDULERS.build(dict(s, optimizer=wrapper))
                  for s in cfg.param_scheduler]
    lrs = {}
    for it in range(max(at) + 1):
        if it in at:
            lrs[it] = wrapper.get_lr()['lr'][0]
        for scheduler in schedulers:
            scheduler.step()
    return lrs


def test_lr_schedule_is_warmup_then_cosine_as_the_authors():
    """mmcv 1.x CosineAnnealing(min_lr_ratio=1e-8) with a 1000-iteration
    linear warm-up from 0.1: lr = base * warm-up factor * cosine factor."""
    cfg = config('t')
    base, total = 2e-4, 80000

    def authors(it):
        cosine = 1e-8 + (1 - 1e-8) * (1 + math.cos(math.pi * it / total)) / 2
        warm = 0.1 + 0.9 * it / 1000 if it < 1000 else 1.
        return base * warm * cosine

    at = {0, 1, 500, 999, 1000, 40000, 79999, 80000}
    lrs = _lr_schedule(cfg, at)
    # abs 1e-13 (5e-10 of the base lr): at the very end the lr is ~2e-12 and
    # mmengine's recursive cosine carries its eta_min through the warm-up
    # product slightly differently (2.08e-12 instead of 2e-12).
    for it in at:
        assert lrs[it] == pytest.approx(authors(it), rel=1e-6, abs=1e-13), it
    assert lrs[0] == pytest.approx(2e-5)
    assert lrs[1] == pytest.approx(2e-4 * 0.1009, rel=1e-6)
    assert lrs[1000] == pytest.approx(2e-4, rel=1e-3)
    assert lrs[80000] < 1e-11


@pytest.mark.parametrize('hw', [(375, 500), (640, 480), (333, 1001),
                                (97, 31), (4000, 300)])
def test_align_resize_makes_multiples_of_32_and_keeps_ratio(hw):
    from mmcv.transforms import Resize
    h, w = hw
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    seg = rng.integers(0, 150, (h, w), dtype=np.uint8)
    align = AlignResize(scale=(2048, 512), keep_ratio=True, size_divisor=32)
    out = align(dict(img=img.copy(), gt_seg_map=seg.copy()))
    ref = Resize(scale=(2048, 512), keep_ratio=True)(dict(img=img.copy()))
    new_h, new_w = out['img'].shape[:2]
    ref_h, ref_w = ref['img'].shape[:2]
    assert new_h % 32 == 0 and new_w % 32 == 0
    # Both sides of mmseg's keep-ratio resize, each rounded up to 32.
    assert (new_h, new_w) == (math.ceil(ref_h / 32) * 32,
                              math.ceil(ref_w / 32) * 32)
    # Each side grows by under 32 px (plus imrescale's half-pixel rounding).
    assert abs(new_w / new_h / (w / h) - 1) < 33 / min(ref_h, ref_w)
    assert set(out) >= set(ref) | {'gt_seg_map'}
    assert out['img_shape'] == (new_h, new_w)
    assert out['scale_factor'] == pytest.approx((new_w / w, new_h / h))
    assert out['keep_ratio'] is True
    assert out['gt_seg_map'].shape == (new_h, new_w)
    assert out['gt_seg_map'].dtype == np.uint8
    assert set(np.unique(out['gt_seg_map'])) <= set(np.unique(seg))


def test_align_resize_is_found_by_mmseg_and_rejects_bad_input():
    from mmengine.registry import DefaultScope
    from mmseg.registry import TRANSFORMS
    with DefaultScope.overwrite_default_scope('mmseg'):
        t = TRANSFORMS.build(dict(type='AlignResize', scale=(100, 100)))
    assert isinstance(t, AlignResize)
    out = t(dict(img=np.zeros((50, 70, 3), np.uint8)))
    assert out['img'].shape == (96, 128, 3)  # 50x70 -> 71x100 -> 96x128
    with pytest.raises(ValueError, match='size_divisor'):
        AlignResize(scale=(64, 64), size_divisor=0)
    with pytest.raises(ValueError, match='scale'):
        AlignResize()
    with pytest.raises(ValueError, match='image'):
        t(dict(img=np.zeros((0, 5, 3), np.uint8)))


@pytest.fixture(scope='module')
def ade_sample(coco_sample):
    """The real ADE20K-layout sample (COCO images + human labels)."""
    spec = importlib.util.spec_from_file_location('coco_to_ade', CONVERTER)
    converter = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(converter)
    out = osp.join(ROOT, 'data/ade20k_sample')
    counts = converter.convert(coco_sample, out)
    return out, counts, converter


def test_converter_writes_ade_layout_with_mapped_labels(ade_sample):
    import mmcv
    from mmseg.datasets import ADE20KDataset
    out, counts, converter = ade_sample
    classes = [c.strip() for c in ADE20KDataset.METAINFO['classes']]
    for split in ('training', 'validation'):
        assert len(glob.glob(osp.join(out, 'images', split, '*.jpg'))) == 10
        assert len(glob.glob(osp.join(out, 'annotations', split,
                                      '*.png'))) == 10
    seg = mmcv.imread(osp.join(out, 'annotations/training/000000074646.png'),
                      flag='unchanged')
    assert seg.ndim == 2 and seg.dtype == np.uint8
    person = classes.index('person') + 1
    assert person in np.unique(seg)
    assert counts['person'] > 0 and 'sofa' in counts and 'table' in counts
    with pytest.raises(ValueError, match='unicorn'):
        converter.CLASS_MAP['horse'] = 'unicorn'
        try:
            converter.ade_labels(classes)
        finally:
            converter.CLASS_MAP['horse'] = 'animal'


def test_loss_falls_on_a_fixed_batch(ade_sample):
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner
    from mmseg.registry import MODELS
    cfg = Config.fromfile(DEMO)
    init_default_scope('mmseg')
    torch.manual_seed(0)
    cfg.train_dataloader.dataset.data_root = ade_sample[0]
    cfg.train_dataloader.batch_size = 2
    resize, crop = cfg.train_dataloader.dataset.pipeline[2:4]
    assert (resize.type, crop.type) == ('RandomResize', 'RandomCrop')
    resize.scale, crop.crop_size = (512, 128), (128, 128)  # a test, not a run
    cfg.model.data_preprocessor.size = (128, 128)
    batch = next(iter(Runner.build_dataloader(cfg.train_dataloader, seed=0)))
    losses = fixed_batch_losses(MODELS.build(cfg.model), batch, lr=2e-4,
                                weight_decay=1e-4)
    assert all(math.isfinite(x) for x in losses)
    assert min(losses[-2:]) < losses[0] * 0.9, losses


def test_train_evaluate_test_and_draw_on_real_sample(ade_sample, tmp_path):
    """tools/train.py: a few iterations of the demo with mIoU at the end;
    tools/test.py --show-dir and tools/image_demo.py on its checkpoint."""
    work = str(tmp_path / 'work')
    small = ['--cfg-options', 'train_cfg.max_iters=2',
             'train_cfg.val_interval=2', 'default_hooks.checkpoint.interval=2',
             'train_dataloader.batch_size=2', 'default_hooks.logger.interval=1']
    log = run_tool(['tools/train.py', DEMO, '--work-dir', work] + small)
    assert 'mIoU' in log and 'person' in log  # the per-class table
    ckpt = osp.join(work, 'iter_2.pth')
    assert osp.isfile(ckpt)
    log = run_tool(['tools/test.py', DEMO, ckpt, '--work-dir',
                    str(tmp_path / 'test'), '--show-dir', 'vis'])
    metrics = glob.glob(str(tmp_path / 'test' / '*' / '*.json'))
    assert metrics, log[-2000:]
    with open(metrics[0]) as f:
        assert 0 <= json.load(f)['mIoU'] <= 100
    drawn = glob.glob(str(tmp_path / 'test/vis/vis_data/vis_image/*.png'))
    assert len(drawn) == 10
    image = osp.join(ade_sample[0], 'images/validation/000000074646.jpg')
    log = run_tool(['tools/image_demo.py', image, DEMO, ckpt,
                    '--out-dir', str(tmp_path / 'demo')])
    assert osp.isfile(tmp_path / 'demo' / '000000074646.jpg'), log[-2000:]


def test_fit_check_splits_the_sample(ade_sample):
    """tools/run_seg_demo.sh: trains and validates on the same 8 images, not
    augmented, and tests on the other 2."""
    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS
    cfg = Config.fromfile(
        osp.join(ROOT, 'configs/demo/fpn_transxnet_t_ade20k_fitcheck.py'))
    init_default_scope('mmseg')
    names = {}
    for split in ('train', 'val', 'test'):
        dataset = cfg[f'{split}_dataloader'].dataset
        dataset.data_root = ade_sample[0]
        assert not any('Random' in t.type or 'Photo' in t.type
                       for t in dataset.pipeline)
        built = DATASETS.build(dataset)
        names[split] = {osp.basename(built.get_data_info(i)['img_path'])
                        for i in range(len(built))}
    assert len(names['train']) == 8 and names['val'] == names['train']
    assert len(names['test']) == 2 and not names['test'] & names['train']
