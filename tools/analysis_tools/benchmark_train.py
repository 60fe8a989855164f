"""Speed and memory of whole training iterations (or inference) of one of our
configs, with our backbone and, as a second column, the authors'.

    python tools/analysis_tools/benchmark_train.py CONFIG
        [--authors-backbone ../shared/reference/authors_transxnet_dense.py]
        [--shape H W] [--batch N] [--iters 5] [--warmup 2] [--rounds 1]
        [--eval] [--contention] [--ablate] [--device cpu|cuda] [--threads 2]

The model is built as ``tools/train.py`` builds it in one process: the
config's registry and scope, ``init_weights()``, SyncBN reverted to
``_BatchNormXd`` (MMEngine's Runner does this without DDP), the config's
optimizer wrapper. The backbone's pretrained ``init_cfg`` is dropped (random
weights time the same). With ``--authors-backbone PATH`` the authors' model
file replaces our backbone inside the same detector or segmentor, holding the
same weights (through our converter) and the config's drop path rate.

A training iteration is ``model.train_step`` as the Runner calls it: data
preprocessor, backbone, neck, heads, losses, backward and optimizer step, on
random images with valid ground truth (boxes, and masks for Mask R-CNN;
a label map for segmentors), the same for both columns. ``--eval`` times
``model.test_step`` (post-processing included) and, in a second row, the
backbone alone on the preprocessed batch, without gradients.

Each column runs in a fresh process, ``--rounds`` times with the columns
alternating (so that a slower spell of a shared machine does not fall on
one column only); the table gives the median over the ``--iters``
iterations after ``--warmup`` of every round and the peak tensor memory of the
first two iterations above what was allocated before them (CPU: the live
tensor storages, ``benchmark_utils.LiveBytes``; GPU:
``torch.cuda.max_memory_allocated``), which
includes gradients and the optimizer's state. ``--contention`` repeats each
measurement while a second process runs a matrix-product loop on
``--threads`` threads, the columns alternating in the same conditions.

``--ablate`` adds a table of what each kernel of :mod:`transxnet_mm.ops`
saves in this run. One more process holds copies of our model, each with its
own optimizer: all kernels on (twice, to show the noise left) and each
kernel off in turn (``use_kernels(False, name)``). Peak memory is measured
per copy as above; the timed iterations go round the copies, so that every
copy sees the same machine conditions.
"""
import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
from contextlib import nullcontext
from typing import Callable, Dict, Tuple

import numpy as np
import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.optim import build_optim_wrapper

from benchmark_utils import (DEFAULT_SHAPES, authors_model, machine,
                             matmul_contender, measure_step, median_time)

from transxnet_mm.apis import build_model
from transxnet_mm.ops import KERNELS, use_kernels

DEFAULT_BATCH = 2  # the paper's images per GPU for detection


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='one of our configs')
    parser.add_argument('--authors-backbone', metavar='PATH',
                        help="the authors' model file, for a second column")
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help='image size; default 800 1280 (mmdet), '
                        '512 512 (mmseg)')
    parser.add_argument('--batch', type=int, default=DEFAULT_BATCH)
    parser.add_argument('--iters', type=int, default=5,
                        help='timed iterations (the median is reported)')
    parser.add_argument('--warmup', type=int, default=2,
                        help='iterations before timing (at least 2: the '
                        'first two measure the memory)')
    parser.add_argument('--rounds', type=int, default=1,
                        help='processes per column, run in turn with the '
                        "other column's (the iterations of all are pooled)")
    parser.add_argument('--eval', action='store_true',
                        help='time inference (test_step) instead of training')
    parser.add_argument('--contention', action='store_true',
                        help='also measure while a second process runs a '
                        'matrix-product loop')
    parser.add_argument('--ablate', action='store_true',
                        help='also time our model with each kernel off, one '
                        'at a time, and print what each saves')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--device', default='cuda' if
                        torch.cuda.is_available() else 'cpu')
    parser.add_argument('--worker', metavar='IMPL', help=argparse.SUPPRESS)
    parser.add_argument('--contender', action='store_true',
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.warmup < 2:
        parser.error('--warmup must be at least 2: the first two iterations '
                     'measure the memory')
    if args.iters < 1 or args.rounds < 1:
        parser.error('--iters and --rounds must be at least 1')
    if args.batch < 2 and not args.eval:
        parser.error("--batch must be at least 2 for training: the authors' "
                     'IDConv BatchNorm cannot train on one image')
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        parser.error('--device cuda: no GPU is visible to PyTorch '
                     '(torch.cuda.is_available() is False); use --device cpu')
    return args


def build_for_training(cfg: Config, device: str, authors: str = None):
    """The config's model and optimizer wrapper as ``tools/train.py``'s
    Runner builds them in one process; the authors' backbone in place of
    ours when ``authors`` names their file. Returns (model, wrapper, scope).
    """
    scope = cfg.get('default_scope', 'mmdet')
    cfg = copy.deepcopy(cfg)
    cfg.model.backbone.pop('init_cfg', None)  # random weights time the same
    model_cfg = cfg.model
    model = build_model(cfg, inference=False)
    model.init_weights()
    if authors:
        arch = model_cfg.backbone.get('arch', 't')
        if arch not in ('t', 's', 'b'):
            raise SystemExit(f"--authors-backbone: the authors' file builds "
                             f"the paper's variants t, s and b; this "
                             f'config\'s backbone arch is {arch!r}')
        ours = model.backbone
        model.backbone = AuthorsBackbone(
            authors_model(authors, arch, ours.state_dict(),
                          model_cfg.backbone.get('drop_path_rate', 0.)),
            ours.out_indices)
    model = revert_sync_batchnorm(model).to(device)
    wrapper = build_optim_wrapper(model, copy.deepcopy(cfg.optim_wrapper))
    return model, wrapper, scope


class AuthorsBackbone(torch.nn.Module):
    """The authors' fork_feat model returning the stages our backbone's
    ``out_indices`` name, as the neck expects them."""

    def __init__(self, model: torch.nn.Module, out_indices) -> None:
        super().__init__()
        self.model = model
        self.out_indices = tuple(out_indices)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        outs = self.model(x)
        return tuple(outs[i] for i in self.out_indices)


def random_batch(scope: str, model, shape: Tuple[int, int], batch: int,
                 seed: int = 0) -> dict:
    """A batch as the config's dataloader hands it to ``train_step``: uint8
    images of ``shape`` and data samples with valid ground truth (5 boxes
    of at least 32 pixels per image, their masks when the model has a mask
    head; a label map for segmentors)."""
    gen = torch.Generator().manual_seed(seed)
    h, w = shape
    inputs = [torch.randint(0, 256, (3, h, w), generator=gen,
                            dtype=torch.uint8) for _ in range(batch)]
    meta = dict(img_shape=(h, w), ori_shape=(h, w), scale_factor=(1., 1.),
                flip=False, flip_direction=None)
    samples = []
    if scope == 'mmdet':
        from mmdet.structures import DetDataSample
        from mmdet.structures.mask import BitmapMasks
        from mmengine.structures import InstanceData
        with_mask = getattr(model, 'with_mask', False)
        classes = _num_classes(model)
        for _ in range(batch):
            xy = torch.rand(5, 2, generator=gen) * torch.tensor([w, h]) / 2
            wh = 32 + torch.rand(5, 2, generator=gen) * torch.tensor(
                [w, h]) / 2
            boxes = torch.cat([xy, torch.minimum(
                xy + wh, torch.tensor([w - 1., h - 1.]))], 1)
            gt = InstanceData(
                bboxes=boxes,
                labels=torch.randint(0, classes, (5, ), generator=gen))
            if with_mask:
                masks = np.zeros((5, h, w), np.uint8)
                for m, (x1, y1, x2, y2) in zip(masks, boxes.int().tolist()):
                    m[y1:y2, x1:x2] = 1
                gt.masks = BitmapMasks(masks, h, w)
            samples.append(DetDataSample(metainfo=meta, gt_instances=gt))
    elif scope == 'mmseg':
        from mmengine.structures import PixelData
        from mmseg.structures import SegDataSample
        classes = model.decode_head.num_classes
        for _ in range(batch):
            label = torch.randint(0, classes, (1, h, w), generator=gen)
            samples.append(SegDataSample(
                metainfo=meta, gt_sem_seg=PixelData(data=label)))
    else:
        raise SystemExit(f'benchmark_train.py times detection and '
                         f'segmentation configs; this one is {scope!r} '
                         '(use tools/analysis_tools/benchmark.py)')
    return dict(inputs=inputs, data_samples=samples)


def _num_classes(model) -> int:
    head = getattr(model, 'bbox_head', None) or model.roi_head.bbox_head
    head = head[-1] if isinstance(head, torch.nn.ModuleList) else head
    return head.num_classes


def build_steps(args, impl: str) -> Dict[str, Callable[[], object]]:
    """The calls to time, by part: 'model' (``train_step``, or ``test_step``
    with ``--eval``) and with ``--eval`` 'backbone' (the backbone alone on
    the preprocessed batch)."""
    torch.manual_seed(0)
    cfg = Config.fromfile(args.config)
    model, wrapper, scope = build_for_training(
        cfg, args.device, args.authors_backbone if impl == 'authors' else None)
    shape = tuple(args.shape or DEFAULT_SHAPES[scope])
    if scope == 'mmseg':  # the preprocessor pads to the crop size
        model.data_preprocessor.size = shape
    data = random_batch(scope, model, shape, args.batch)
    if not args.eval:
        model.train()
        return dict(model=lambda: model.train_step(data, wrapper))
    model.eval()
    with torch.no_grad():
        batch_inputs = model.data_preprocessor(copy.deepcopy(data),
                                               False)['inputs']

    def step():
        with torch.no_grad():
            model.test_step(data)

    def backbone():
        with torch.no_grad():
            model.backbone(batch_inputs)

    return dict(model=step, backbone=backbone)


def run_worker(args, impl: str) -> dict:
    """One column's measurements; runs in its own process."""
    steps = build_steps(args, impl)
    result = {}
    for part in ('backbone', 'model'):
        if part in steps:
            result[part] = measure_step(steps[part], args.iters,
                                        args.warmup, args.device)
    return result


# --ablate: our model with every kernel on (twice) and each one off
ABLATIONS = ['all on'] + list(KERNELS) + ['all on again']


def run_ablation(args) -> dict:
    """For each part, each ablation's peak MB and seconds per iteration; the
    timed iterations go round the ablations (one process, a model and
    optimizer each)."""
    def kernels(name):
        return nullcontext() if name.startswith('all on') \
            else use_kernels(False, name)

    steps = {name: build_steps(args, 'ours') for name in ABLATIONS}
    sync = torch.cuda.synchronize if args.device.startswith('cuda') \
        else None
    result = {}
    for part in steps[ABLATIONS[0]]:
        result[part] = {}
        for name in ABLATIONS:
            with kernels(name):
                result[part][name] = measure_step(
                    steps[name][part], 0, args.warmup, args.device)
        for _ in range(args.iters):
            for name in ABLATIONS:
                with kernels(name):
                    result[part][name]['times'] += median_time(
                        steps[name][part], 1, 0, sync)
    return result


def run_column(args, env: dict, impl: str, busy: bool) -> dict:
    cmd = [sys.executable, __file__, args.config, '--worker', impl,
           '--batch', str(args.batch), '--iters', str(args.iters),
           '--warmup', str(args.warmup), '--threads', str(args.threads),
           '--device', args.device]
    cmd += ['--shape', *map(str, args.shape)] if args.shape else []
    cmd += ['--eval'] if args.eval else []
    cmd += ['--authors-backbone', args.authors_backbone] \
        if args.authors_backbone else []
    other = subprocess.Popen([sys.executable, __file__, args.config,
                              '--contender', '--threads', str(args.threads)],
                             env=env) if busy else None
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    finally:
        if other is not None:
            other.kill()
            other.wait()
    line = [x for x in out.stdout.splitlines() if x.startswith('RESULT ')]
    if out.returncode != 0 or not line:
        raise SystemExit(f'{impl} column failed:\n{out.stderr[-3000:]}')
    return json.loads(line[0][len('RESULT '):])


def run_rounds(args, env: dict, impls, busy: bool) -> dict:
    """Each column ``--rounds`` times, the columns in turn: the first
    round's results with the timed iterations of all rounds."""
    results = {}
    for _ in range(args.rounds):
        for impl in impls:
            out = run_column(args, env, impl, busy)
            if impl not in results:
                results[impl] = out
                continue
            for part, res in out.items():
                results[impl][part]['times'] += res['times']
    return results


def main():
    args = parse_args()
    if args.contender:
        matmul_contender(args.threads)
        return
    if args.worker:
        torch.set_num_threads(args.threads)
        result = run_ablation(args) if args.worker == 'ablate' \
            else run_worker(args, args.worker)
        print('RESULT ' + json.dumps(result))
        return
    if not os.path.isfile(args.config):
        raise SystemExit(f'{args.config!r} does not exist: give one of our '
                         'config files, e.g. '
                         'configs/retinanet_transxnet_t.py')
    impls = (['authors'] if args.authors_backbone else []) + ['ours']
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads),
               MKL_NUM_THREADS=str(args.threads))
    results = {}
    for busy in [False, True] if args.contention else [False]:
        results[busy] = run_rounds(args, env, impls, busy)
    ablation = {busy: run_column(args, env, 'ablate', busy)
                for busy in results} if args.ablate else {}
    print(f'{args.config}: {"inference" if args.eval else "training"}, '
          f'batch {args.batch}, {machine(args.device, args.threads)}, '
          f'torch {torch.__version__}; median of {args.iters} iterations '
          f'after {args.warmup}' + (f' in each of {args.rounds} processes '
                                    'per column, in turn'
                                    if args.rounds > 1 else ''))
    cols = [f'{i} ms' for i in impls]
    if args.contention:
        cols += [f'{i} ms busy' for i in impls]
    cols += [f'{i} peak MB' for i in impls]
    if args.authors_backbone:
        cols += ['speed-up'] + (['speed-up busy'] if args.contention
                                else []) + ['memory ratio']
    print('| part | ' + ' | '.join(cols) + ' |\n' +
          '|---' * (1 + len(cols)) + '|')
    parts = ['model', 'backbone'] if args.eval else ['model']
    for part in parts:
        med = {(busy, i): statistics.median(r[part]['times'])
               for busy, res in results.items() for i, r in res.items()}
        peak = {i: r[part]['peak_mb'] for i, r in results[False].items()}
        cells = [f'{med[busy, i] * 1e3:.0f}' for busy in results
                 for i in impls] + [f'{peak[i]:.0f}' for i in impls]
        if args.authors_backbone:
            cells += [f'{med[busy, "authors"] / med[busy, "ours"]:.2f}x'
                      for busy in results]
            cells.append(f'{peak["ours"] / peak["authors"]:.2f}'
                         if peak['authors'] else '-')
        name = ('test_step' if args.eval else 'train_step') \
            if part == 'model' else 'backbone only'
        print(f'| {name} | ' + ' | '.join(cells) + ' |', flush=True)
    for busy, res in ablation.items():
        for part in parts:
            print_ablation(res[part], part, busy)


def print_ablation(res: dict, part: str, busy: bool) -> None:
    """What each kernel saves: the iteration's median time and peak memory
    with it off, against all kernels on (the mean of the two runs)."""
    ms = {n: statistics.median(r['times']) * 1e3 for n, r in res.items()}
    base = (ms['all on'] + ms['all on again']) / 2
    peak = res['all on']['peak_mb']
    name = 'backbone only' if part == 'backbone' else part
    print(f"\n{name}{', busy' if busy else ''}: each kernel off, in turn "
          f"(all on: {ms['all on']:.0f} and {ms['all on again']:.0f} ms, "
          f'{peak:.0f} MB)\n| kernel off | ms | peak MB | time without it '
          '| peak memory without it |\n|---|---|---|---|---|')
    for k in KERNELS:
        print(f"| {k} | {ms[k]:.0f} | {res[k]['peak_mb']:.0f} | "
              f'{100 * (ms[k] / base - 1):+.1f}% | '
              f"{100 * (res[k]['peak_mb'] / peak - 1):+.1f}% |", flush=True)


if __name__ == '__main__':
    main()
