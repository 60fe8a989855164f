"""Reproduction fidelity beyond the model (issue 17): the Semantic FPN's
initial weights, the evaluation / best-checkpoint settings, and full
training batches (an epoch-end batch of one image must not stop training)."""
import copy
import glob
import importlib.util
import math
import os.path as osp

import pytest
import torch
from helpers import CONFIGS, ROOT, train_loop
from paper import PAPER_SEM_FPN
from mmengine.config import Config
from mmengine.registry import DATA_SAMPLERS, HOOKS, init_default_scope
from torch.utils.data import Dataset, SequentialSampler

from transxnet_mm.apis import build_model
from transxnet_mm.datasets.samplers import FullBatchSampler


def config(name: str) -> Config:
    return Config.fromfile(osp.join(CONFIGS, name))


def leaf_configs(prefix: str) -> list:
    """Config paths (relative to configs/) of the configs, demo/ included,
    whose name starts with ``prefix``."""
    paths = glob.glob(osp.join(CONFIGS, prefix + '*.py')) + \
        glob.glob(osp.join(CONFIGS, '*', prefix + '*.py'))
    return sorted(osp.relpath(p, CONFIGS) for p in paths
                  if '_base_' not in p)


# ---------------------------------------------------------------- init ---
def kaiming_fan_out_std(conv: torch.nn.Conv2d) -> float:
    """mmcv 1.x ConvModule's init: Kaiming normal, fan_out, 'relu' gain."""
    k = conv.kernel_size[0] * conv.kernel_size[1]
    return math.sqrt(2. / (conv.out_channels * k))


def pytorch_default_bound(conv: torch.nn.Conv2d) -> float:
    """nn.Conv2d.reset_parameters: weight kaiming_uniform_(a=sqrt(5)), i.e.
    U(+-gain * sqrt(3 / fan_in)) with gain sqrt(2 / (1 + 5)), and bias
    U(+-1 / sqrt(fan_in)): both bounds are 1 / sqrt(fan_in)."""
    k = conv.kernel_size[0] * conv.kernel_size[1]
    return 1. / math.sqrt(conv.in_channels // conv.groups * k)


@pytest.fixture(scope='module')
def fpn_t():
    """Semantic FPN-T after init_weights() (what MMEngine's runner calls),
    backbone from scratch (its pretrained init is not the point here)."""
    import transxnet_mm  # noqa: F401  (PyTorchDefault initialiser)
    torch.manual_seed(0)
    model = build_model(config('fpn_transxnet_t_ade20k.py'))
    model.init_weights()
    return model


def test_fpn_neck_and_head_start_from_the_authors_init(fpn_t):
    neck, head = fpn_t.neck, fpn_t.decode_head
    # 3x3 FPN convs (256 -> 256): std 0.0295; Xavier (mmseg's) gives 0.0208.
    for conv in [m.conv for m in neck.fpn_convs]:
        std = kaiming_fan_out_std(conv)
        assert std == pytest.approx(0.02946, rel=1e-3)
        assert conv.weight.std().item() == pytest.approx(std, rel=0.1)
        assert conv.weight.mean().abs().item() < 0.1 * std
        assert torch.all(conv.bias == 0)
    for conv in [m.conv for m in neck.lateral_convs]:  # 1x1, bias 0
        assert conv.weight.std().item() == pytest.approx(
            kaiming_fan_out_std(conv), rel=0.1)
        assert torch.all(conv.bias == 0)
    head_convs = [m for m in head.scale_heads.modules()
                  if isinstance(m, torch.nn.Conv2d)]
    assert len(head_convs) == 7  # 3x3 (256 or 128 -> 128), BN after each
    for conv in head_convs:
        assert conv.weight.std().item() == pytest.approx(
            kaiming_fan_out_std(conv), rel=0.1)
    # conv_seg: PyTorch's default, weight and bias U(+-1/sqrt(128)); mmseg's
    # own would be N(0, 0.01) with a zero bias.
    seg = head.conv_seg
    bound = pytorch_default_bound(seg)
    assert bound == pytest.approx(1 / math.sqrt(128))
    for p in (seg.weight, seg.bias):
        assert p.abs().max().item() <= bound
        assert p.abs().max().item() > 0.9 * bound  # fills the range
    assert seg.weight.std().item() == pytest.approx(bound / math.sqrt(3),
                                                    rel=0.1)
    assert seg.bias.std().item() > 0.03  # not a constant


def test_pytorch_default_initialiser():
    from mmengine.model import initialize
    import transxnet_mm  # noqa: F401
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(64, 32, 3),
                              torch.nn.Linear(32, 8))
    initialize(net, dict(type='Constant', val=5., bias=5.,
                         layer=['Conv2d', 'Linear']))
    initialize(net, dict(type='PyTorchDefault', layer='Conv2d'))
    conv, linear = net
    assert conv.weight.abs().max() <= pytorch_default_bound(conv)
    assert conv.bias.abs().max() <= pytorch_default_bound(conv)
    assert torch.all(linear.weight == 5.)  # not a Conv2d: left alone
    with pytest.raises(TypeError, match='bias'):
        initialize(net, dict(type='PyTorchDefault', bias=0.))


# ------------------------------------------------- evaluation settings ---
def built_checkpoint_hook(cfg):
    init_default_scope(cfg.default_scope)
    return HOOKS.build(cfg.default_hooks.checkpoint)


def loader_batches(cfg, dataset, batches: int = None) -> tuple:
    """The config's train dataloader, built by MMEngine's Runner over
    ``dataset`` in this process (no workers): the lengths of its batches,
    the first ``batches`` of them (all of one epoch when None), and the
    items seen."""
    import itertools
    from mmengine.runner import Runner
    init_default_scope(cfg.default_scope)
    loader_cfg = copy.deepcopy(cfg.train_dataloader)
    loader_cfg.update(dataset=dataset, num_workers=0,
                      persistent_workers=False)
    loader = Runner.build_dataloader(loader_cfg, seed=0)
    taken = list(itertools.islice(loader, batches))
    return [len(b) for b in taken], {int(i) for b in taken for i in b}


@pytest.mark.parametrize('variant', ['t', 's', 'b'])
def test_seg_validates_and_keeps_checkpoints_as_the_authors(variant):
    """The built train loop validates every 4000 iterations; the built
    checkpoint hook saves as often, by iteration, keeps the latest one and
    the best mIoU, a metric the built evaluator reports."""
    from mmseg.datasets import ADE20KDataset
    from mmseg.registry import METRICS
    cfg = config(f'fpn_transxnet_{variant}_ade20k.py')
    authors = PAPER_SEM_FPN
    loop = train_loop(cfg)
    assert type(loop).__name__ == 'IterBasedTrainLoop'
    assert loop.val_interval == authors['val_interval']
    hook = built_checkpoint_hook(cfg)
    assert (hook.by_epoch, hook.interval, hook.max_keep_ckpts) == \
        (False, authors['val_interval'], authors['max_keep_ckpts'])
    assert hook.save_best == [authors['save_best']]
    metric = METRICS.build(cfg.val_evaluator)
    metric.dataset_meta = ADE20KDataset.METAINFO
    classes = len(ADE20KDataset.METAINFO['classes'])
    areas = tuple(torch.ones(classes) for _ in range(4))
    assert authors['save_best'] in metric.compute_metrics([areas])


@pytest.mark.parametrize(
    'name', leaf_configs('retinanet_') + leaf_configs('mask_rcnn_') +
    leaf_configs('cascade_mask_rcnn_'))
def test_detection_keeps_the_best_bbox_map_and_full_batches(
        name, coco_sample):
    """The built checkpoint hook keeps the best of the built evaluator's
    first metric (the authors' mmdet 2 save_best='auto': bbox mAP); the
    built train dataloader over 7 images of two aspect groups gives full
    batches only and every image."""
    from mmdet.registry import METRICS
    cfg = config(name)
    hook = built_checkpoint_hook(cfg)
    evaluator = dict(cfg.val_evaluator, ann_file=osp.join(
        coco_sample, 'annotations', 'instances_val2017_sample.json'))
    metric = METRICS.build(evaluator)
    assert hook.save_best == [f'{metric.prefix}/{metric.metrics[0]}_mAP']
    assert metric.metrics[0] == 'bbox' and hook.rules == ['greater']
    sizes = [(480, 640)] * 3 + [(640, 480)] * 4
    lengths, seen = loader_batches(cfg, Images(sizes))
    batch = cfg.train_dataloader.batch_size
    assert batch >= 2 and set(lengths) == {batch}
    assert seen == set(range(len(sizes)))


@pytest.mark.parametrize('name', leaf_configs('fpn_') +
                         leaf_configs('upernet_'))
def test_segmentation_batches_are_full(name):
    """mmseg trains from an endless sampler: the built train dataloader
    over an odd dataset never yields a short batch."""
    cfg = config(name)
    lengths, seen = loader_batches(cfg, Images([(640, 480)] * 5), 6)
    batch = cfg.train_dataloader.batch_size
    assert batch >= 2 and lengths == [batch] * 6
    assert seen == set(range(5))


@pytest.mark.parametrize('name', leaf_configs('transxnet_'))
def test_classification_drops_the_last_batch_as_timm(name):
    """The built train dataloader over 2 batches + 1 image: 2 full
    batches (timm's drop_last)."""
    cfg = config(name)
    batch = cfg.train_dataloader.batch_size
    lengths, _ = loader_batches(cfg, Images([(64, 64)] * (2 * batch + 1)))
    assert batch >= 2 and lengths == [batch, batch]


# ------------------------------------------------------- full batches ---
class Images(Dataset):
    """Stand-in for a dataset: its images' sizes (get_data_info, what
    mmdet's samplers read); an item is its index."""

    def __init__(self, sizes):
        self.sizes = sizes

    def __len__(self):
        return len(self.sizes)

    def get_data_info(self, idx):
        w, h = self.sizes[idx]
        return dict(width=w, height=h)

    def __getitem__(self, idx):
        return idx


@pytest.mark.parametrize('sizes,batch_size', [
    ([(640, 480)] * 5, 2),                       # odd, one group
    ([(480, 640)] * 2 + [(640, 480)] * 3, 2),    # odd, two groups
    ([(480, 640)] * 3 + [(640, 480)] * 4, 4),    # two short groups
    ([(640, 480)], 2),                           # smaller than a batch
])
def test_full_batch_sampler_pads_what_mmdet_leaves_short(sizes, batch_size):
    init_default_scope('mmdet')
    sampler = SequentialSampler(Images(sizes))
    sampler.dataset = sampler.data_source
    inner = dict(type='AspectRatioBatchSampler')
    mmdet = DATA_SAMPLERS.build(
        inner, default_args=dict(sampler=sampler, batch_size=batch_size))
    ours = DATA_SAMPLERS.build(
        dict(type='FullBatchSampler', batch_sampler=inner),
        default_args=dict(sampler=sampler, batch_size=batch_size))
    assert isinstance(ours, FullBatchSampler) and ours.sampler is sampler
    theirs, full = list(mmdet), list(ours)
    assert min(len(b) for b in theirs) < batch_size  # the problem
    assert all(len(b) == batch_size for b in full)
    assert len(full) == len(theirs) == len(ours) == len(mmdet)
    # The same batches, completed; every image still seen each epoch.
    for short, padded in zip(theirs, full):
        assert padded[:len(short)] == short
    assert {i for b in full for i in b} == set(range(len(sizes)))


def test_full_batch_sampler_without_a_wrapped_sampler():
    ours = FullBatchSampler(SequentialSampler(range(5)), 2)
    assert list(ours) == [[0, 1], [2, 3], [4, 0]]
    with pytest.raises(ValueError, match='drop_last'):
        FullBatchSampler(SequentialSampler(range(5)), 2,
                         dict(type='AspectRatioBatchSampler', drop_last=True))
    with pytest.raises(ValueError, match='batch_size'):
        FullBatchSampler(SequentialSampler(range(5)), 0)


def tiny_run(cfg: Config, work_dir: str, num_images: int):
    """Train ``cfg`` in this process on the first ``num_images`` images,
    without validation; return the runner after training."""
    from mmengine.runner import Runner
    cfg.train_dataloader.dataset.indices = num_images
    cfg.work_dir = work_dir
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=-1,
                                        save_last=False)
    cfg.default_hooks.logger.interval = 1
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner


@pytest.mark.slow
def test_detection_epoch_over_an_odd_real_sample_finishes(coco_sample,
                                                          tmp_path):
    """One process (plain BN), 3 real COCO images, batch 2, one epoch:
    mmdet's sampler alone would end the epoch on a batch of one image."""
    cfg = config('demo/retinanet_transxnet_t_coco_sample.py')
    cfg.train_dataloader.dataset.data_root = coco_sample + '/'
    scale = (64, 48)  # tiny: the point is the epoch's end
    for t in cfg.train_dataloader.dataset.pipeline:
        if t.type == 'Resize':
            t.scale = scale
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1)
    runner = tiny_run(cfg, str(tmp_path), 3)
    assert runner.iter == 2  # batches [2, 2]: the last one padded
    assert runner.epoch == 1


@pytest.fixture(scope='module')
def ade_sample(coco_sample):
    spec = importlib.util.spec_from_file_location(
        'coco_to_ade', osp.join(ROOT, 'tools/dataset_converters/'
                                'coco_to_ade20k_sample.py'))
    converter = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(converter)
    out = osp.join(ROOT, 'data/ade20k_sample')
    converter.convert(coco_sample, out)
    return out


@pytest.mark.slow
def test_segmentation_epoch_over_an_odd_real_sample_finishes(ade_sample,
                                                             tmp_path):
    """One process (plain BN), 3 real ADE20K-layout images, batch 2: the
    second batch holds the third image and the first of the next pass."""
    cfg = config('demo/fpn_transxnet_t_ade20k_sample.py')
    cfg.train_dataloader.dataset.data_root = ade_sample
    resize, crop = cfg.train_dataloader.dataset.pipeline[2:4]
    resize.scale, crop.crop_size = (128, 32), (32, 32)  # tiny
    cfg.model.data_preprocessor.size = (32, 32)
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=2)
    cfg.param_scheduler = []
    runner = tiny_run(cfg, str(tmp_path), 3)
    assert runner.iter == 2
