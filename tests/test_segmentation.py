"""Semantic FPN configs: what the built models, optimizers, schedules and
pipelines are, against the paper's settings (conftest's PAPER_SEM_FPN);
the AlignResize transform; a real run on the ADE20K-layout sample."""
import glob
import json
import math
import os.path as osp

import numpy as np
import pytest
import torch
from helpers import (ROOT, backbone_facts, build_structure, config_file,
                     dataset_on_sample, fixed_batch_losses, keep_ratio_size,
                     linear_drop_path, load_tool, lr_curve, run_tool,
                     weight_decays)
from paper import (AUTHORS_MODEL_PARAMS, PAPER_GPUS, PAPER_SEM_FPN,
                   PAPER_VARIANTS)
from mmengine.config import Config

from transxnet_mm.apis import build_model
from transxnet_mm.datasets.transforms import AlignResize

DEMO = osp.join(ROOT, 'configs/demo/fpn_transxnet_t_ade20k_sample.py')
VARIANTS = ['t', 's', 'b']


def config(variant: str) -> Config:
    return Config.fromfile(config_file(f'fpn_transxnet_{variant}_ade20k'))


def name(variant: str) -> str:
    return f'fpn_transxnet_{variant}_ade20k'


@pytest.mark.parametrize('variant', VARIANTS)
def test_params_are_the_authors_models(variant):
    """Counted on the built model: the authors' model in mmseg 1.2.2."""
    model, _ = build_structure(config(variant))
    params = sum(p.numel() for p in model.parameters()) / 1e6
    assert round(params, 2) == AUTHORS_MODEL_PARAMS[name(variant)]


@pytest.mark.parametrize('variant', VARIANTS)  # S, B: slow (conftest)
def test_built_model_runs_with_the_papers_fpn(variant):
    """A real forward: four backbone outputs (strides 4-32, the stage
    channels), the FPN's four 256-channel levels, the head's 128 channels
    into the classifier, logits for ADE20K's classes at stride 4."""
    from mmseg.datasets import ADE20KDataset
    model = build_model(config(variant))
    scope = model.cfg.default_scope
    assert scope == 'mmseg'
    captured = {}
    for part in ('backbone', 'neck'):
        getattr(model, part).register_forward_hook(
            lambda m, i, out, part=part: captured.setdefault(part, out))
    model.decode_head.conv_seg.register_forward_pre_hook(
        lambda m, args: captured.setdefault('head', args[0]))
    size = 128
    with torch.no_grad():
        logits = model(torch.rand(1, 3, size, size))  # tensor mode
    assert torch.isfinite(logits).all()
    paper = PAPER_SEM_FPN
    assert [size // f.shape[2] for f in captured['backbone']] == \
        [4, 8, 16, 32]
    assert [f.shape[1] for f in captured['backbone']] == \
        PAPER_VARIANTS[variant]['channels']
    assert len(captured['neck']) == paper['fpn_outs']
    assert {f.shape[1] for f in captured['neck']} == {paper['fpn_out']}
    assert captured['head'].shape[1] == paper['head_channels']
    classes = len(ADE20KDataset.METAINFO['classes'])
    assert classes == paper['num_classes']
    assert logits.shape == (1, classes, size // 4, size // 4)


@pytest.mark.parametrize('variant', VARIANTS)
def test_backbone_head_and_optimizer_are_the_papers(variant):
    """The built model: the variant's backbone (drop path growing to the
    paper's rate, SyncBN, the authors' checkpoint, which loads through
    init_cfg: a model.pretrained would not build), the FPN head's 128
    channels, dropout 0.1 and SyncBN; the built optimizer: AdamW, the
    paper's lr and weight decay on every parameter, no clipping; the total
    batch of 8 GPUs."""
    cfg = config(variant)
    paper = PAPER_SEM_FPN
    model, _ = build_structure(cfg)
    facts = backbone_facts(model.backbone)
    assert facts['variant'] == variant
    assert facts['drop_path'] == pytest.approx(linear_drop_path(
        PAPER_VARIANTS[variant]['drop_path_dense'], sum(facts['depths'])))
    assert facts['batch_norms'] == {'SyncBatchNorm'}
    assert osp.basename(facts['checkpoint']) == f'transx-{variant}.pth.tar'
    head = model.decode_head
    assert head.channels == paper['head_channels']
    assert isinstance(head.dropout, torch.nn.Dropout2d)
    assert head.dropout.p == paper['dropout']
    assert {type(m).__name__ for m in head.modules()
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)} == \
        {'SyncBatchNorm'}
    wrapper, decay = weight_decays(model, cfg)
    assert type(wrapper.optimizer).__name__ == 'AdamW'
    assert wrapper.optimizer.defaults['lr'] == paper['lr']
    assert set(decay.values()) == {paper['weight_decay']}
    assert {g['lr'] for g in wrapper.optimizer.param_groups} == {paper['lr']}
    assert wrapper.clip_grad_kwargs is None
    assert type(wrapper).__name__ == 'OptimWrapper'
    assert cfg.train_dataloader.batch_size * PAPER_GPUS == \
        cfg.auto_scale_lr.base_batch_size == paper['batch']


def test_ade20k_root_is_set_in_one_place(monkeypatch):
    """The default is mmseg's ADE20K root; ADE20K_ROOT moves every split."""
    from mmengine.hub import get_config
    mmseg_default = get_config('mmseg::_base_/datasets/ade20k.py')
    assert config('t').train_dataloader.dataset.data_root == \
        mmseg_default.data_root
    monkeypatch.setenv('ADE20K_ROOT', '/datasets/ade')
    cfg = config('b')
    roots = {loader.dataset.data_root for loader in (
        cfg.train_dataloader, cfg.val_dataloader, cfg.test_dataloader)}
    assert roots == {'/datasets/ade'}


def test_lr_schedule_is_warmup_then_cosine_as_the_authors():
    """The lr the built schedulers give over the built train loop against
    the authors' mmcv 1.x CosineAnnealing(min_lr_ratio=1e-8) with a
    1000-iteration linear warm-up from 0.1: lr = base * warm-up factor *
    cosine factor, over the paper's 80k iterations. S and B train with T's
    optimizer, schedule and loop."""
    cfg = config('t')
    paper = PAPER_SEM_FPN
    base, total, min_ratio = paper['lr'], paper['iters'], paper['min_lr_ratio']
    warmup, ratio = paper['warmup_iters'], paper['warmup_ratio']

    def authors(it):
        cosine = min_ratio + (1 - min_ratio) * (
            1 + math.cos(math.pi * it / total)) / 2
        warm = ratio + (1 - ratio) * it / warmup if it < warmup else 1.
        return base * warm * cosine

    at = {0, 1, 500, warmup - 1, warmup, total // 2, total - 1}
    lrs, loop = lr_curve(cfg, 1, at)
    assert loop.max_iters == total
    # abs 1e-13 (5e-10 of the base lr): at the very end the lr is ~2e-12 and
    # mmengine's recursive cosine carries its eta_min through the warm-up
    # product slightly differently (2.08e-12 instead of 2e-12).
    for it in at:
        assert lrs[it] == pytest.approx(authors(it), rel=1e-6, abs=1e-13), it
    assert lrs[total - 1] < base * 1e-7
    for v in 'sb':
        other = config(v)
        for key in ('optim_wrapper', 'param_scheduler', 'train_cfg'):
            assert other[key] == cfg[key], (v, key)


def test_train_pipeline_resizes_crops_and_pads_as_the_paper(ade_sample):
    """The built train pipeline on the real ADE20K-layout images: resized
    keeping the ratio to (2048, 512) x a random 0.5-2.0, cropped to at most
    512x512 (exactly that once the image is larger), flipped half the time;
    the data preprocessor pads every crop to 512x512."""
    import copy
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS
    cfg = config('t')
    paper = PAPER_SEM_FPN
    init_default_scope('mmseg')
    dataset = dataset_on_sample(cfg.train_dataloader.dataset, ade_sample[0])
    steps = dataset.pipeline.transforms
    resize = next(i for i, t in enumerate(steps)
                  if 'Resize' in type(t).__name__)
    np.random.seed(0)
    loaded = dataset.get_data_info(0)
    for t in steps[:resize]:
        loaded = t(loaded)
    oh, ow = loaded['ori_shape']
    short = min(keep_ratio_size((oh, ow), paper['scale']))
    ratios = [min(steps[resize](copy.deepcopy(loaded))['img_shape']) / short
              for _ in range(60)]
    lo, hi = paper['ratio_range']
    # 60 draws of U(0.5, 2): each bound within 0.3 of its end (P > 1 - 1e-5)
    assert lo - 0.01 <= min(ratios) < lo + 0.3
    assert hi - 0.3 < max(ratios) <= hi + 0.01
    crop = paper['crop']
    outs = [dataset[0] for _ in range(12)]
    crops = [tuple(out['inputs'].shape[1:]) for out in outs]
    assert all(h <= crop[0] and w <= crop[1] for h, w in crops)
    assert crop in crops and len(set(crops)) > 1
    flips = [out['data_samples'].flip for out in outs]
    assert 0 < sum(flips) < len(flips)
    preprocessor = MODELS.build(cfg.model.data_preprocessor)
    small = next(out for out, size in zip(outs, crops) if size != crop)
    batch = preprocessor(dict(inputs=[small['inputs']],
                              data_samples=[small['data_samples']]), True)
    assert tuple(batch['inputs'].shape[2:]) == crop


def test_test_pipeline_aligns_the_scale_to_32(ade_sample):
    """The built test pipeline (the dataloaders' and the one inference
    uses): (2048, 512) keeping the ratio, each side rounded up to a
    multiple of 32; the labels stay at the original size for the metric."""
    from mmengine.dataset import Compose
    from mmengine.registry import init_default_scope
    cfg = config('t')
    paper = PAPER_SEM_FPN
    init_default_scope('mmseg')
    div = paper['size_divisor']
    for loader in (cfg.val_dataloader, cfg.test_dataloader):
        dataset = dataset_on_sample(loader.dataset, ade_sample[0])
        inference = Compose(cfg.test_pipeline)
        for i in range(3):
            out = dataset[i]
            meta = out['data_samples'].metainfo
            h, w = keep_ratio_size(meta['ori_shape'], paper['scale'])
            size = (math.ceil(h / div) * div, math.ceil(w / div) * div)
            assert tuple(out['inputs'].shape[1:]) == size
            assert out['data_samples'].gt_sem_seg.shape == meta['ori_shape']
            again = inference(dataset.get_data_info(i))
            assert torch.equal(again['inputs'], out['inputs'])


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
    converter = load_tool('dataset_converters', 'coco_to_ade20k_sample.py')
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


@pytest.mark.slow
def test_loss_falls_on_a_fixed_batch(ade_sample):
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner
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
    losses = fixed_batch_losses(build_model(cfg, inference=False), batch,
                                lr=2e-4, weight_decay=1e-4)
    assert all(math.isfinite(x) for x in losses)
    assert min(losses[-2:]) < losses[0] * 0.9, losses


@pytest.mark.slow
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
