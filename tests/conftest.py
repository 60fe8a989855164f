import glob
import importlib.util
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
# Every test's peak memory, bounded and reported (the fixture and hook).
from memory_guard import (peak_memory, pytest_collection_finish,  # noqa: F401
                          pytest_terminal_summary)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
# The authors' checkpoint key lists, the generator of deterministic random
# weights in their format and their TransXNet-T outputs on those weights:
# data the test suite owns (see reference/README.md).
REFERENCE = osp.join(ROOT, 'tests', 'reference')
CONFIGS = osp.join(ROOT, 'configs')
# The authors' own model file, beside the repository (the benchmarks' baseline).
AUTHORS_FILE = osp.join(osp.dirname(ROOT), 'shared', 'reference',
                        'authors_transxnet_dense.py')
needs_authors_file = pytest.mark.skipif(
    not osp.isfile(AUTHORS_FILE),
    reason=f"the authors' model file is not at {AUTHORS_FILE}")


def load_tool(*path: str):
    """A script of tools/ (e.g. ``'analysis_tools', 'benchmark_train.py'``)
    as a module."""
    spec = importlib.util.spec_from_file_location(
        osp.splitext(path[-1])[0], osp.join(ROOT, 'tools', *path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def config_file(name: str) -> str:
    """The path of one of our configs by its file name (``.py`` optional):
    configs/<name>.py (the paper's) or configs/<folder>/<name>.py (the
    others: Cascade, UperNet, demo)."""
    name = name if name.endswith('.py') else name + '.py'
    found = glob.glob(osp.join(CONFIGS, name)) + \
        glob.glob(osp.join(CONFIGS, '*', name))
    assert len(found) == 1, f'{name}: {found}'
    return found[0]


def pytest_configure(config):
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    config.addinivalue_line(
        'markers', 'slow: exports, subprocess trainings, compiling, large '
        'sizes, the S and B variants (the fast tier: pytest -m "not slow")')


# Parameters that name one of the paper's variants ('t', 's', 'b') or one of
# our configs or models ('retinanet_transxnet_s', 'transxnet/..._b_...').
VARIANT_PARAMS = ('arch', 'variant', 'name')


def pytest_collection_modifyitems(config, items):
    """Tests run for every variant take T in the fast tier; the same checks
    on S and B (larger models, the same code) are marked slow."""
    import re
    for item in items:
        params = getattr(getattr(item, 'callspec', None), 'params', {})
        for key in VARIANT_PARAMS:
            value = params.get(key)
            if isinstance(value, str) and (value in ('s', 'b') or re.search(
                    r'transxnet[_-][sb](_|\.py$|$)', value)):
                item.add_marker(pytest.mark.slow)
                break


@pytest.fixture(scope='session')
def reference_dir() -> str:
    return REFERENCE


def _random_official_ckpt():
    """tests/reference/random_official_ckpt.py, imported by path (kept
    byte-identical to the file it was vendored from)."""
    spec = importlib.util.spec_from_file_location(
        'random_official_ckpt', osp.join(REFERENCE, 'random_official_ckpt.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='session')
def official_sd():
    """Deterministic random weights in the authors' format, per variant."""
    make_state_dict = _random_official_ckpt().make_state_dict
    cache = {}

    def get(variant: str):
        if variant not in cache:
            cache[variant] = make_state_dict(
                osp.join(REFERENCE, f'official_keys_{variant}.txt'))
        return cache[variant]

    return get


@pytest.fixture(scope='session')
def coco_sample() -> str:
    """The real COCO val2017 sample (10 images, official annotations),
    fetched once into data/coco_sample/ by our own tool."""
    out = osp.join(ROOT, 'data', 'coco_sample')
    run_tool(['tools/dataset_converters/fetch_coco_sample.py', '--out', out])
    return out


def run_tool(args, **kwargs) -> str:
    """Run one of our tools (a path relative to the repo, then its
    arguments) with this Python, from the repo root; assert it succeeded
    and return what it printed (stdout and stderr)."""
    out = subprocess.run([sys.executable] + list(args), cwd=ROOT, text=True,
                         capture_output=True, **kwargs)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-3000:]
    return log


def fixed_batch_losses(model, batch, lr: float, weight_decay: float,
                       steps: int = 6) -> list:
    """Train ``model`` (an mmdet/mmseg model) on one batch for ``steps``
    AdamW steps; the losses, for checking that they are finite and fall."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr,
                            weight_decay=weight_decay)
    losses = []
    for _ in range(steps):
        data = model.data_preprocessor(batch, True)
        loss, _ = model.parse_losses(model(**data, mode='loss'))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


# --------------------------------------------------------------------------
# The paper's settings and numbers, kept here once. Source: the project's
# reference, ../shared/reference/transxnet.md (the paper, arXiv 2310.19380,
# and the authors' code, github.com/LMMMEng/TransXNet). The tests compare
# them with what is built from the configs or read from the metafile; a
# value typed again from a config is no test of that config.
# --------------------------------------------------------------------------
PAPER_GPUS = 8  # every setting of section 3 trains on 8 GPUs

# Section 1 (the variants): blocks and channels per stage, the drop path
# rates, and the ImageNet classifier's params (M), FLOPs (G) at 224x224 and
# top-1. The authors' released ImageNet checkpoint of each variant is
# transx-<variant>.pth.tar (section 2).
PAPER_VARIANTS = {
    't': dict(depths=[3, 3, 9, 3], channels=[48, 96, 224, 448],
              drop_path_imagenet=0.1, drop_path_dense=0.1, params=12.83,
              flops=1.8, top1=81.6),
    's': dict(depths=[4, 4, 12, 4], channels=[64, 128, 320, 512],
              drop_path_imagenet=0.2, drop_path_dense=0.2, params=26.86,
              flops=4.5, top1=83.8),
    'b': dict(depths=[4, 4, 21, 4], channels=[76, 152, 336, 672],
              drop_path_imagenet=0.4, drop_path_dense=0.3, params=48.01,
              flops=8.3, top1=84.6),
}

# Section 3: the recipes. Detection: RetinaNet and Mask R-CNN 1x.
PAPER_RETINANET = dict(
    lr=1e-4, weight_decay=1e-4, epochs=12, milestones=(8, 11), gamma=0.1,
    warmup_iters=500, warmup_ratio=1e-3, batch=16, scale=(1333, 800),
    size_divisor=32, out_strides=(8, 16, 32), fpn_out=256,
    fpn_strides=(8, 16, 32, 64, 128))
PAPER_MASK_RCNN = dict(
    PAPER_RETINANET, weight_decay=0.05, out_strides=(4, 8, 16, 32),
    fpn_strides=(4, 8, 16, 32, 64))
PAPER_SEM_FPN = dict(
    lr=2e-4, weight_decay=1e-4, iters=80000, warmup_iters=1000,
    warmup_ratio=0.1, min_lr_ratio=1e-8, batch=32, num_classes=150,
    fpn_out=256, fpn_outs=4, head_channels=128, dropout=0.1,
    scale=(2048, 512), ratio_range=(0.5, 2.0), crop=(512, 512),
    cat_max_ratio=0.75, size_divisor=32,
    # Not in the paper: the authors' semantic_segmentation config
    # (evaluation=dict(interval=4000, save_best='mIoU'), checkpoint_config
    # interval 4000, max_keep_ckpts=1), quoted in
    # configs/_base_/fpn_transxnet_ade20k.py.
    val_interval=4000, save_best='mIoU', max_keep_ckpts=1)
# ImageNet-1K, the authors' timm recipe; 'cooldown_epochs' is timm 0.6.12's
# create_scheduler default, which the authors' train.py keeps (10 epochs at
# the minimum lr after the 300 of the paper).
PAPER_IMAGENET = dict(
    lr=2e-3, weight_decay=0.05, epochs=300, cooldown_epochs=10,
    warmup_epochs=5, warmup_lr=1e-6, min_lr=1e-5, batch=1024, mixup=0.8,
    cutmix=1.0, label_smoothing=0.1, reprob=0.25,
    randaugment=dict(ops=2, magnitude=9, magnitude_std=0.5,
                     policies='timm_increasing', total_level=10),
    ema_decay={'t': 0.9998, 's': 0.99985, 'b': 0.99985},
    crop_pct={'t': 0.9, 's': 0.9, 'b': 0.95}, crop=224)

# Section 4 (Tables IV and V; COCO val2017, ADE20K val single scale): the
# paper's params (M), FLOPs (G, 800x1280) and results.
PAPER_RESULTS = {
    'retinanet_transxnet_t': dict(params=22.4, flops=187, box_ap=43.1),
    'retinanet_transxnet_s': dict(params=36.6, flops=242, box_ap=46.4),
    'retinanet_transxnet_b': dict(params=58.0, flops=317, box_ap=47.6),
    'mask_rcnn_transxnet_t': dict(params=32.5, flops=205, box_ap=44.5,
                                  mask_ap=40.6),
    'mask_rcnn_transxnet_s': dict(params=46.5, flops=261, box_ap=47.7,
                                  mask_ap=43.1),
    'mask_rcnn_transxnet_b': dict(params=67.6, flops=336, box_ap=48.8,
                                  mask_ap=43.8),
    'fpn_transxnet_t_ade20k': dict(miou=45.5),
    'fpn_transxnet_s_ade20k': dict(miou=48.5),
    'fpn_transxnet_b_ade20k': dict(miou=49.9),
}
# Section 4, "measured here with the authors' model inside mmdet 3.3.0 /
# mmseg 1.2.2 detectors built with the settings of section 3" (M params).
AUTHORS_MODEL_PARAMS = {
    'retinanet_transxnet_t': 22.44, 'retinanet_transxnet_s': 36.60,
    'retinanet_transxnet_b': 58.01, 'mask_rcnn_transxnet_t': 32.50,
    'mask_rcnn_transxnet_s': 46.52, 'mask_rcnn_transxnet_b': 67.56,
    'fpn_transxnet_t_ade20k': 16.60, 'fpn_transxnet_s_ade20k': 30.62,
    'fpn_transxnet_b_ade20k': 51.66,
}

# Not the paper's: the standard comparison protocols our extra configs
# follow (mmdet's Swin / ConvNeXt Cascade Mask R-CNN 3x, mmseg 1.x's Swin
# UperNet 160k), with the backbone of the paper's dense models.
PROTOCOL_CASCADE_3X = dict(
    lr=1e-4, weight_decay=0.05, epochs=36, milestones=(27, 33), gamma=0.1,
    warmup_iters=500, warmup_ratio=1e-3, batch=16, scale=(1333, (640, 800)))
PROTOCOL_UPERNET_160K = dict(
    lr=6e-5, weight_decay=0.01, iters=160000, warmup_iters=1500,
    warmup_ratio=1e-6, poly_power=1., batch=16, num_classes=150)


def load_config(name: str):
    """One of our configs by its file name (see ``config_file``)."""
    from mmengine.config import Config
    return Config.fromfile(config_file(name))


def variant_of(name: str) -> str:
    """'t', 's' or 'b' from a config or model name."""
    import re
    return re.search(r'transxnet[_-]([tsb])(_|$)', name).group(1)


def build_structure(cfg, device: str = 'meta'):
    """The config's model as its toolbox builds it, nothing changed: SyncBN
    and the backbone's init_cfg kept, init_weights() not called; on the
    'meta' device (no memory, no initialisation) unless ``device`` says
    otherwise. Returns (model, scope)."""
    from mmengine.registry import init_default_scope
    scope = cfg.default_scope
    init_default_scope(scope)
    registry = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
    model_cfg = cfg.model.copy()
    if scope == 'mmpretrain':  # as mmpretrain's Runner hands it over
        model_cfg.setdefault('data_preprocessor', cfg.get('data_preprocessor'))
    with torch.device(device):
        return registry.build(model_cfg), scope


def backbone_facts(backbone) -> dict:
    """What a built TransXNet is, read from its modules: blocks and channels
    per stage, the variant they make (None if no variant of the paper), the
    drop path rate of every block in order, the BatchNorm types and the
    pretrained checkpoint of its init_cfg."""
    from mmcv.cnn.bricks import DropPath
    from torch.nn.modules.batchnorm import _BatchNorm
    depths = [len(stage.blocks) for stage in backbone.stages]
    channels = [down.conv.out_channels for down in backbone.downsample_layers]
    variant = next((v for v, p in PAPER_VARIANTS.items()
                    if (p['depths'], p['channels']) == (depths, channels)),
                   None)
    drop_path = [b.drop_path.drop_prob if isinstance(b.drop_path, DropPath)
                 else 0. for stage in backbone.stages for b in stage.blocks]
    init_cfg = backbone.init_cfg or {}
    return dict(
        depths=depths, channels=channels, variant=variant,
        drop_path=drop_path,
        batch_norms={type(m).__name__ for m in backbone.modules()
                     if isinstance(m, _BatchNorm)},
        checkpoint=init_cfg.get('checkpoint')
        if init_cfg.get('type') == 'Pretrained' else None)


def linear_drop_path(rate: float, blocks: int) -> list:
    """Section 2: drop path grows linearly with the global block index."""
    return [rate * i / (blocks - 1) for i in range(blocks)]


def norm_param_names(model) -> set:
    """Names of the parameters of the model's normalisation layers
    (BatchNorm / SyncBN, GroupNorm, LayerNorm, InstanceNorm)."""
    from torch.nn.modules.batchnorm import _BatchNorm
    from torch.nn.modules.instancenorm import _InstanceNorm
    kinds = (_BatchNorm, _InstanceNorm, torch.nn.GroupNorm,
             torch.nn.LayerNorm)
    return {f'{m}.{p}' if m else p
            for m, module in model.named_modules() if isinstance(module, kinds)
            for p, _ in module.named_parameters(recurse=False)}


def weight_decays(model, cfg):
    """The config's optimizer wrapper built for ``model`` as the Runner
    builds it, and the weight decay it gives each parameter by name."""
    import copy
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope
    init_default_scope(cfg.default_scope)
    wrapper = build_optim_wrapper(model, copy.deepcopy(cfg.optim_wrapper))
    names = {id(p): n for n, p in model.named_parameters()}
    decay = {names[id(p)]: group['weight_decay']
             for group in wrapper.optimizer.param_groups
             for p in group['params']}
    assert len(decay) == len(names)  # every parameter, once
    return wrapper, decay


class _Batches(torch.utils.data.Dataset):
    """A stand-in for a training set of ``n`` batches (one item each)."""
    metainfo: dict = {}

    def __init__(self, n: int):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return i


def train_loop(cfg, iters_per_epoch: int = 1):
    """The config's train loop as MMEngine's Runner builds it
    (Runner.build_train_loop), over a stand-in dataloader of
    ``iters_per_epoch`` batches: its max_epochs, max_iters, val_interval."""
    import copy
    import types
    from mmengine.registry import LOOPS, init_default_scope
    from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop
    init_default_scope(cfg.default_scope)
    loop_cfg = copy.deepcopy(cfg.train_cfg)
    runner = types.SimpleNamespace(visualizer=types.SimpleNamespace())
    args = dict(runner=runner,
                dataloader=torch.utils.data.DataLoader(
                    _Batches(iters_per_epoch), batch_size=1))
    if 'type' in loop_cfg:
        return LOOPS.build(loop_cfg, default_args=args)
    by_epoch = loop_cfg.pop('by_epoch')
    return (EpochBasedTrainLoop if by_epoch else IterBasedTrainLoop)(
        **loop_cfg, **args)


def lr_curve(cfg, iters_per_epoch: int, points, model=None):
    """The learning rate in force during each (0-based, global) training
    iteration of ``points``, and the built train loop.

    As MMEngine's Runner does it: the optimizer wrapper from
    ``cfg.optim_wrapper`` (for ``model``; by default one parameter, the
    config's base lr without per-parameter rules), the ``param_scheduler``
    list built with PARAM_SCHEDULERS (``end`` defaulting to the loop's
    length, epoch-based ones converted with ``epoch_length`` where the
    config asks), stepped as ParamSchedulerHook steps them: iteration-based
    ones after every iteration, epoch-based ones after every epoch of
    ``iters_per_epoch`` iterations (never, in an iteration-based loop)."""
    import copy
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import PARAM_SCHEDULERS, init_default_scope
    from mmengine.runner import EpochBasedTrainLoop
    loop = train_loop(cfg, iters_per_epoch)
    by_epoch_loop = isinstance(loop, EpochBasedTrainLoop)
    init_default_scope(cfg.default_scope)
    wrapper_cfg = copy.deepcopy(cfg.optim_wrapper)
    if model is None:
        wrapper_cfg.pop('constructor', None)
        wrapper_cfg.pop('paramwise_cfg', None)
        model = torch.nn.Module()
        model.weight = torch.nn.Parameter(torch.zeros(1))
    wrapper = build_optim_wrapper(model, wrapper_cfg)
    schedulers = []
    for scheduler in copy.deepcopy(cfg.param_scheduler):
        scheduler.setdefault('end', loop.max_epochs if scheduler.get(
            'by_epoch', True) else loop.max_iters)
        schedulers.append(PARAM_SCHEDULERS.build(
            scheduler, default_args=dict(optimizer=wrapper,
                                         epoch_length=iters_per_epoch)))
    points = set(points)
    assert max(points) < loop.max_iters, (max(points), loop.max_iters)
    lrs = {}
    for it in range(max(points) + 1):
        if it in points:
            lrs[it] = wrapper.optimizer.param_groups[0]['lr']
        for s in schedulers:
            if not s.by_epoch:
                s.step()
        if by_epoch_loop and (it + 1) % iters_per_epoch == 0:
            for s in schedulers:
                if s.by_epoch:
                    s.step()
    return lrs, loop


def mmcv_warmup_factor(it: int, warmup_iters: int, ratio: float) -> float:
    """mmcv 1.x LrUpdaterHook's linear warm-up (the authors' mmdet 2.x and
    mmseg 0.x): the factor on the regular lr before iteration ``it``."""
    if it >= warmup_iters:
        return 1.
    return ratio + (1 - ratio) * it / warmup_iters


def step_schedule(recipe: dict, iters_per_epoch: int):
    """The lr of iteration ``it`` of a warm-up + step-decay recipe (the
    paper's detectors, mmdet's 3x protocol): base lr x the warm-up factor
    x gamma per milestone epoch passed (epoch = it // iters_per_epoch)."""
    def lr(it: int) -> float:
        passed = sum(it // iters_per_epoch >= m for m in recipe['milestones'])
        return recipe['lr'] * recipe['gamma'] ** passed * mmcv_warmup_factor(
            it, recipe['warmup_iters'], recipe['warmup_ratio'])
    return lr


def assert_warmup_then_exact(lrs: dict, expected, warmup_iters: int,
                             rel: float = 1e-9):
    """``lrs`` equal ``expected`` (a function of the iteration), except that
    during the warm-up MMEngine's LinearLR may run up to one iteration ahead
    of mmcv 1.x's (it reaches the full lr at ``end - 1``): there the lr lies
    between the expected one and the next iteration's."""
    for it, lr in sorted(lrs.items()):
        if it < warmup_iters:
            lo, hi = sorted((expected(it), expected(it + 1)))
            assert lo * (1 - rel) <= lr <= hi * (1 + rel), (it, lr, lo, hi)
        else:
            assert lr == pytest.approx(expected(it), rel=rel), it


def dataset_on_sample(dataset_cfg, data_root: str, **overrides):
    """``dataset_cfg`` (of one of our configs, a RepeatDataset's inner one
    included) pointed at a sample at ``data_root``, ``overrides`` laid over
    it; built in the current default scope's DATASETS."""
    import copy
    from mmengine.registry import DATASETS
    cfg = copy.deepcopy(dataset_cfg)
    inner = cfg.dataset if 'dataset' in cfg else cfg
    inner.update(data_root=data_root, **overrides)
    return DATASETS.build(cfg)


def coco_dataset(dataset_cfg, coco_sample: str):
    """A detection config's dataset on the real COCO sample (its pipeline
    unchanged)."""
    return dataset_on_sample(
        dataset_cfg, coco_sample + '/',
        ann_file='annotations/instances_val2017_sample.json',
        data_prefix=dict(img='val2017/'))


def keep_ratio_size(hw, scale) -> tuple:
    """(h, w) of an image of size ``hw`` resized to fit ``scale`` (long,
    short) keeping its ratio, as mmcv's rescale_size rounds it."""
    h, w = hw
    factor = min(max(scale) / max(h, w), min(scale) / min(h, w))
    return int(h * factor + 0.5), int(w * factor + 0.5)
