"""Speed and memory of the TransXNet backbone: our default path against the
authors' computation, same weights, same run.

    python tools/analysis_tools/benchmark_backbone.py [--archs t s b]
        [--authors-model ../shared/reference/authors_transxnet_dense.py]
        [--sizes 224x224x8 512x512x2 800x1216x1] [--modes eval train]
        [--runs 5] [--warmup 2] [--threads 2] [--device cpu|cuda]
        [--contention] [--keep-freed-memory] [--impls ...]
        [--amp bf16|fp16] [--protocol table11] [--norm BN|SyncBN]

The baseline is the authors' own model file when ``--authors-model PATH``
names one (any file defining their ``TransXNet(arch=..., fork_feat=True)``;
our weights are handed to it in their key names through our converter),
else ``plain``: our model with the kernels of :mod:`transxnet_mm.ops`
turned off. ``--impls plain`` adds that column beside the authors'.

``--contention`` measures every cell twice: quiet, and while a second
process runs a matrix-product loop on ``--threads`` threads (as a data
loader, another job or a second model would), the implementations
alternating in the same conditions.

eval = forward without gradients (model.eval()); train = forward + backward
of a training step (train mode, batch statistics; no optimizer step) with at
least 2 images: IDConv's BatchNorm sees one value per channel and sample, so
the authors' model cannot take a training step on a single image. Each
cell runs in a fresh subprocess; it prints the median latency over ``--runs``
runs after ``--warmup`` runs, images/s, and the peak tensor memory of the
first two steps above what was allocated before them (weights and input
excluded; anything a step keeps for the next one, such as a cache, counts).
CPU: the live tensor storages (``benchmark_utils.LiveBytes``; RSS would
mostly measure malloc's fragmentation); GPU: torch.cuda.max_memory_allocated.

On CPU glibc hands every block over 32 MB back to the kernel when it is
freed, so each new map of that size page-faults again: a large share of a
step, and the most variable one on a shared machine. ``--keep-freed-memory``
runs both columns with glibc keeping freed memory (the environment variables
MALLOC_MMAP_MAX_=0 and MALLOC_TRIM_THRESHOLD_), which users can set too.

``--norm SyncBN`` builds our backbone with the paper configs' norm, reverted
to ``_BatchNormXd`` as MMEngine's Runner does in one process (the authors'
file has plain ``BatchNorm2d`` in its blocks either way).
``--amp bf16|fp16`` runs every column under ``torch.autocast`` with that
dtype. ``--protocol table11`` is the paper's speed protocol (its Table XI:
inference at 224x224, batch 128, images/s and peak memory, on one RTX 3090):
those cells for ``--archs`` (``--sizes`` still overrides, e.g. a smaller
batch for a smaller GPU), with images/s and the peak of all allocated memory
(weights and input included, as a GPU's memory counter reports it) next to
the paper's row.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
from contextlib import nullcontext

import torch
from mmengine.model import revert_sync_batchnorm

from benchmark_utils import (authors_model, machine, matmul_contender,
                             measure_step)

from transxnet_mm.models import TransXNet
from transxnet_mm.ops import explain, use_kernels

AMP_DTYPES = dict(bf16=torch.bfloat16, fp16=torch.float16)
# The paper's Table XI: inference on one RTX 3090, 224x224, batch 128
# (images/s, MB); the paper gives T's row.
TABLE11 = dict(size='224x224x128', paper=dict(t=(857, 2252)))


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--archs', nargs='+', default=['t', 's', 'b'])
    parser.add_argument('--sizes', nargs='+', help='HxWxBATCH (default: '
                        '224x224x8 512x512x2 800x1216x1)')
    parser.add_argument('--modes', nargs='+', choices=['eval', 'train'],
                        help='default: eval train')
    parser.add_argument('--authors-model', metavar='PATH',
                        help="the authors' model file, the baseline")
    parser.add_argument('--impls', nargs='+', default=[],
                        choices=['plain'],
                        help='more columns: ours with the kernels off')
    parser.add_argument('--contention', action='store_true',
                        help='also measure each cell while a second process '
                        'runs a matrix-product loop')
    parser.add_argument('--runs', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=2,
                        help='warm-up steps (at least 2: the first two '
                        'measure the memory)')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--device', default='cuda' if
                        torch.cuda.is_available() else 'cpu')
    parser.add_argument('--norm', choices=['BN', 'SyncBN'], default='BN',
                        help="our backbone's norm_cfg type (SyncBN: reverted "
                        'as in a one-process run)')
    parser.add_argument('--amp', choices=sorted(AMP_DTYPES),
                        help='run under torch.autocast with this dtype')
    parser.add_argument('--protocol', choices=['table11'],
                        help="the paper's speed protocol: inference at "
                        '224x224, batch 128, images/s and peak memory')
    parser.add_argument('--keep-freed-memory', action='store_true',
                        help='run the cells with glibc keeping freed memory '
                        '(MALLOC_MMAP_MAX_=0, MALLOC_TRIM_THRESHOLD_ large): '
                        'fewer page faults, steadier and faster on CPU')
    parser.add_argument('--explain', action='store_true',
                        help="print which path each module of our backbone "
                        'takes in each cell, and why (transxnet_mm.ops.'
                        'explain), instead of measuring')
    parser.add_argument('--worker', nargs=6, help=argparse.SUPPRESS)
    parser.add_argument('--contender', action='store_true',
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.warmup < 2:
        parser.error('--warmup must be at least 2: the first two steps '
                     'measure the memory')
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        parser.error(f'--device {args.device}: no GPU is visible to torch '
                     f'{torch.__version__}; use --device cpu')
    table11 = args.protocol == 'table11'
    args.sizes = args.sizes or ([TABLE11['size']] if table11 else
                                ['224x224x8', '512x512x2', '800x1216x1'])
    args.modes = args.modes or (['eval'] if table11 else ['eval', 'train'])
    return args


def run_cell(arch, h, w, batch, mode, impl, runs, warmup, device,
             amp=None, norm='BN') -> dict:
    """One measurement; runs inside its own process."""
    torch.manual_seed(0)
    train = mode == 'train'
    model = revert_sync_batchnorm(TransXNet(arch, norm_cfg=dict(type=norm)))
    x = torch.randn(batch, 3, h, w).to(device)
    if impl not in ('default', 'plain'):
        model = authors_model(impl, arch, model.state_dict())
        impl = 'default'
    if impl == 'plain':
        kernels = use_kernels(False)
        kernels.__enter__()  # for the whole worker process
    model = model.to(device).train(train)
    leaves = list(model.parameters())
    resident = leaves + list(model.buffers())

    def forward():
        return model(x)

    autocast = torch.autocast(device.split(':')[0], AMP_DTYPES[amp]) \
        if amp else nullcontext()

    def step():
        if not train:
            with torch.no_grad(), autocast:
                forward()
            return
        for p in leaves:
            p.grad = None
        with autocast:
            loss = sum(o.float().mean() for o in forward())
        loss.backward()

    res = measure_step(step, runs, warmup, device,
                       sum(t.nbytes for t in resident + [x]))
    return dict(res, median=statistics.median(res['times']))


def measure(args, env, cell, impl, busy: bool) -> dict:
    arch, h, w, batch, mode = cell
    cmd = [sys.executable, __file__, '--worker', arch, h, w, batch, mode,
           impl, '--runs', str(args.runs), '--warmup', str(args.warmup),
           '--threads', str(args.threads), '--device', args.device] + \
        (['--amp', args.amp] if args.amp else []) + ['--norm', args.norm]
    other = subprocess.Popen([sys.executable, __file__, '--contender',
                              '--threads', str(args.threads)],
                             env=env) if busy else None
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    finally:
        if other is not None:
            other.kill()
            other.wait()
    line = [x for x in out.stdout.splitlines() if x.startswith('RESULT ')]
    if out.returncode != 0 or not line:
        raise SystemExit(f'{arch} {h}x{w} {mode} {impl} failed:\n'
                         f'{out.stderr[-2000:]}')
    return json.loads(line[0][len('RESULT '):])


def main():
    args = parse_args()
    if args.contender:
        matmul_contender(args.threads)
        return
    if args.worker:
        torch.set_num_threads(args.threads)
        arch, h, w, batch, mode, impl = args.worker
        res = run_cell(arch, int(h), int(w), int(batch), mode, impl,
                       args.runs, args.warmup, args.device, args.amp,
                       args.norm)
        print('RESULT ' + json.dumps(res))
        return
    if args.explain:
        for arch in args.archs:
            model = revert_sync_batchnorm(
                TransXNet(arch, norm_cfg=dict(type=args.norm)))
            for size in args.sizes:
                h, w, batch = (int(v) for v in size.split('x'))
                for mode in args.modes:
                    x = torch.randn(batch, 3, h, w, device=args.device)
                    model.to(args.device).train(mode == 'train')
                    with torch.set_grad_enabled(mode == 'train'):
                        print(explain(model, x, title=f'TransXNet-'
                                      f'{arch.upper()} {mode}') + '\n')
        return
    base = args.authors_model or 'plain'
    base_name = 'authors' if args.authors_model else 'plain'
    impls = [(base_name, base)] + [(i, i) for i in args.impls
                                   if i != base_name] + [('ours', 'default')]
    print(f'TransXNet backbone benchmark: {machine(args.device, args.threads)}'
          f'; torch {torch.__version__}; median of {args.runs} runs after '
          f'{args.warmup} warm-up; baseline: {base}' +
          (f'; autocast {args.amp}' if args.amp else '') +
          ('; our norms SyncBN, reverted' if args.norm == 'SyncBN' else '') +
          ('; glibc keeping freed memory' if args.keep_freed_memory else '') +
          ("; the paper's Table XI protocol (paper: one RTX 3090)"
           if args.protocol else ''))
    cols = [f'{n} ms' for n, _ in impls] + [f'speed-up vs {base_name}']
    if args.contention:
        cols += [f'{n} ms busy' for n, _ in impls] + ['speed-up busy']
    cols += [f'{base_name} peak MB', 'ours peak MB', 'memory ratio']
    if args.protocol:
        cols += [f'{n} img/s' for n, _ in impls] + \
            [f'{n} total MB' for n, _ in impls] + ['paper img/s, MB']
    header = '| arch | input | mode | ' + ' | '.join(cols) + ' |'
    print(header + '\n' + '|---' * (3 + len(cols)) + '|', flush=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads),
               MKL_NUM_THREADS=str(args.threads))
    if args.keep_freed_memory:
        env.update(MALLOC_MMAP_MAX_='0', MALLOC_TRIM_THRESHOLD_=str(2**40))
    for arch in args.archs:
        for size in args.sizes:
            h, w, size_batch = size.split('x')
            for mode in args.modes:
                batch = str(max(int(size_batch), 2) if mode == 'train' else
                            int(size_batch))
                cell = (arch, h, w, batch, mode)
                cells = [arch.upper(), f'{batch}x{h}x{w}', mode]
                quiet = None
                for busy in ([False, True] if args.contention else [False]):
                    res = {n: measure(args, env, cell, impl, busy)
                           for n, impl in impls}
                    quiet = quiet or res
                    cells += [f'{res[n]["median"] * 1e3:.0f}'
                              for n, _ in impls]
                    ratio = res[base_name]['median'] / res['ours']['median']
                    cells.append(f'{ratio:.2f}x')
                ref, ours = quiet[base_name], quiet['ours']
                cells += [f'{ref["peak_mb"]:.0f}', f'{ours["peak_mb"]:.0f}',
                          f'{ours["peak_mb"] / ref["peak_mb"]:.2f}'
                          if ref['peak_mb'] else '-']
                if args.protocol:
                    paper = TABLE11['paper'].get(arch)
                    cells += [f'{int(batch) / quiet[n]["median"]:.0f}'
                              for n, _ in impls]
                    cells += [f'{quiet[n]["total_mb"]:.0f}' for n, _ in impls]
                    cells.append(f'{paper[0]}, {paper[1]}' if paper else '-')
                print('| ' + ' | '.join(cells) + ' |', flush=True)


if __name__ == '__main__':
    main()
