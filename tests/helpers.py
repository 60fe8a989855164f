"""Helpers shared by the tests: paths, our configs and tools, building a
model's structure, the relative error, and the learning-rate schedules the
configs give (simulated with MMEngine's own schedulers)."""
import glob
import importlib.util
import os.path as osp
import subprocess
import sys

import pytest
import torch
from paper import PAPER_VARIANTS

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


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest absolute difference relative to the largest magnitude of
    ``b`` (the reference)."""
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


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
    from transxnet_mm.apis import build_model
    return build_model(cfg, device=device, inference=False), cfg.default_scope


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
