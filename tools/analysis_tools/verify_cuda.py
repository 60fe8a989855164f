"""Verify and measure the kernels of transxnet_mm.ops on a GPU: one command
for a GPU machine, whose tables go into docs/benchmarks.md.

    python tools/analysis_tools/verify_cuda.py
        [--authors-model ../shared/reference/authors_transxnet_dense.py]
        [--out work_dirs/verify_cuda] [--skip-benchmarks] [--dry-run]

No kernel runs on CUDA until a run of this command has checked it there
(``KERNELS`` in transxnet_mm/ops/rules.py). It runs every kernel on CUDA
(``ops.rules.verifying('cuda')``) against PyTorch's own ops on the same
weights and input:

1. each kernel alone, in the mode it serves (training: outputs, the input's
   and every parameter's gradient, the BatchNorms' running statistics after
   the step; inference: outputs), on a 5-block TransXNet-T with random
   weights, statistics and layer scales; a kernel the rules never took is
   reported as not exercised;
2. with two or more GPUs, one DDP training step in two processes (NCCL,
   ``SyncBatchNorm`` as the paper configs run it): gradients and running
   statistics, kernels on against off;
3. the speed and memory: ``benchmark_train.py --device cuda`` for the three
   T configs, our backbone with the kernels on CUDA and with PyTorch's ops,
   the authors' beside them; and the paper's Table XI protocol
   (``benchmark_backbone.py --protocol table11``) for T, S and B.

A kernel gains 'cuda' in its row when 1 and 2 pass and 3 shows it pays.
``--dry-run`` prints the benchmark commands without running them.
"""
import argparse
import os
import os.path as osp
import subprocess
import sys
from typing import Dict, List, Optional

import torch
import torch.distributed as dist
from torch import Tensor, nn

from transxnet_mm.models import TransXNet
from transxnet_mm.ops import KERNELS, decisions, use_kernels
from transxnet_mm.ops.rules import verifying

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
# TransXNet-T with fewer blocks: every kind of part, quickly.
SMALL = dict(TransXNet.arch_settings['t'], depths=[1, 1, 2, 1])
TOLERANCE = 1e-4  # float32, relative to the largest magnitude
CONFIGS = ['configs/retinanet_transxnet_t.py',
           'configs/mask_rcnn_transxnet_t.py',
           'configs/fpn_transxnet_t_ade20k.py']


def small_model(norm: str = 'BN', seed: int = 0) -> nn.Module:
    """Random weights in which every part counts: BatchNorm statistics and
    layer scales drawn."""
    torch.manual_seed(seed)
    model = TransXNet(SMALL, norm_cfg=dict(type=norm))
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2)
    for name, p in model.named_parameters():
        if 'layer_scale' in name and name.endswith('weight'):
            p.data.uniform_(0.5, 1)
    return model


def rel_err(a: Tensor, b: Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def step(model: nn.Module, x: Tensor, train: bool) -> Dict[str, Tensor]:
    """Outputs (and, training, the input's gradient, the parameters'
    gradients and the running statistics, each group as one vector) of one
    forward (and backward) of ``model``."""
    model = model.train(train)
    model.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_(train)
    with torch.set_grad_enabled(train):
        outs = model(x)
    found = {f'output {i}': o.detach() for i, o in enumerate(outs)}
    if train:
        sum((o * o.detach().sin()).sum() for o in outs).backward()
        found['input gradient'] = x.grad
        found['parameter gradients'] = torch.cat([
            p.grad.flatten() for p in model.parameters()
            if p.grad is not None])
        found['running statistics'] = torch.cat([
            b.flatten() for n, b in model.named_buffers() if 'running' in n])
    return found


def check_kernel(name: str, device: str) -> Dict[str, object]:
    """Kernel ``name`` alone on ``device`` against PyTorch's ops there."""
    train = KERNELS[name].mode != 'inference'
    base = small_model().to(device)
    x = torch.randn(2, 3, 96, 128, device=device)
    results = {}
    for label, on in (('plain', False), ('kernel', True)):
        model = small_model().to(device)
        with verifying(device), use_kernels(False), use_kernels(on, name):
            with torch.set_grad_enabled(train):
                taken = any(d.taken and d.kernel == name
                            for d in decisions(model.train(train), x))
            model.load_state_dict(base.state_dict())  # undo the statistics
            results[label] = step(model, x, train)
        results['taken'] = taken
    errors = {k: rel_err(results['kernel'][k], v)
              for k, v in results['plain'].items()}
    worst = max(errors, key=errors.get)
    return dict(kernel=name, mode='training' if train else 'inference',
                exercised=results['taken'], worst=worst,
                error=errors[worst],
                ok=results['taken'] and errors[worst] < TOLERANCE)


def _ddp_worker(rank: int, world: int, backend: str, norm: str,
                port: int, out: Optional[list]) -> None:
    """One process of :func:`check_ddp`."""
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group(backend, rank=rank, world_size=world)
    device = f'cuda:{rank}' if backend == 'nccl' else 'cpu'
    if backend == 'nccl':
        torch.cuda.set_device(rank)
    found = {}
    for on in (False, True):
        model = small_model(norm).to(device)
        if norm == 'SyncBN':
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        ddp = nn.parallel.DistributedDataParallel(
            model, device_ids=[rank] if backend == 'nccl' else None)
        torch.manual_seed(1 + rank)  # each process its part of the batch
        x = torch.randn(2, 3, 96, 128, device=device)
        with verifying(device.split(':')[0]), use_kernels(on):
            found[on] = step(ddp, x, True)
    errors = {k: rel_err(found[True][k], v) for k, v in found[False].items()}
    worst = max(errors, key=errors.get)
    if rank == 0 and out is not None:
        out.append(dict(worst=worst, error=errors[worst],
                        ok=errors[worst] < TOLERANCE))
    dist.destroy_process_group()


def check_ddp(backend: str = 'nccl', norm: str = 'SyncBN',
              port: int = 29533) -> Dict[str, object]:
    """One DDP training step in two processes, kernels on against off."""
    import torch.multiprocessing as mp
    manager = mp.Manager()
    out = manager.list()
    mp.spawn(_ddp_worker, args=(2, backend, norm, port, out), nprocs=2)
    return dict(out[0])


def benchmark_commands(authors: Optional[str]) -> List[List[str]]:
    """The benchmark runs of step 3, each with and without the kernels on
    CUDA (the environment variable of ops/rules.py)."""
    tool = osp.join('tools', 'analysis_tools')
    authors_train = ['--authors-backbone', authors] if authors else []
    authors_backbone = ['--authors-model', authors] if authors else []
    runs = [[osp.join(tool, 'benchmark_train.py'), cfg, '--device', 'cuda',
             *authors_train] for cfg in CONFIGS]
    runs.append([osp.join(tool, 'benchmark_backbone.py'), '--device', 'cuda',
                 '--protocol', 'table11', '--archs', 't', 's', 'b',
                 *authors_backbone])
    return [[sys.executable, *run] for run in runs]


def table(rows: List[Dict[str, object]], cols: List[str]) -> str:
    lines = ['| ' + ' | '.join(cols) + ' |', '|' + '---|' * len(cols)]
    for row in rows:
        lines.append('| ' + ' | '.join(
            f'{row[c]:.2e}' if isinstance(row[c], float) else str(row[c])
            for c in cols) + ' |')
    return '\n'.join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--authors-model', metavar='PATH',
                        help="the authors' model file (the benchmarks' "
                        'baseline column)')
    parser.add_argument('--out', default='work_dirs/verify_cuda',
                        help='folder of the report (report.md)')
    parser.add_argument('--skip-benchmarks', action='store_true')
    parser.add_argument('--dry-run', action='store_true',
                        help='print the benchmark commands only')
    args = parser.parse_args(argv)
    commands = benchmark_commands(args.authors_model)
    if args.dry_run:
        for cmd in commands:
            print(' '.join(cmd[1:]) + '  # and with TRANSXNET_MM_VERIFY_ON=cuda')
        return 0
    if not torch.cuda.is_available():
        raise SystemExit(f'No GPU is visible to torch {torch.__version__}: '
                         f'this command verifies the kernels on CUDA, run it '
                         f'on a GPU machine (--dry-run shows its benchmarks).')
    report = [f'# verify_cuda: {torch.cuda.get_device_name()}, torch '
              f'{torch.__version__}, CUDA {torch.version.cuda}', '']
    kernels = [check_kernel(name, 'cuda') for name in KERNELS]
    report += ['## Each kernel against PyTorch\'s ops', '',
               table(kernels, ['kernel', 'mode', 'exercised', 'worst',
                               'error', 'ok']), '']
    failed = [k['kernel'] for k in kernels if not k['ok']]
    if torch.cuda.device_count() >= 2:
        ddp = check_ddp()
        report += ['## DDP, 2 processes, SyncBatchNorm', '',
                   table([ddp], ['worst', 'error', 'ok']), '']
        failed += [] if ddp['ok'] else ['ddp']
    else:
        report += ['DDP: one GPU only, not checked.', '']
    if not args.skip_benchmarks:
        report += ['## Benchmarks', '']
        for cmd in commands:
            for env in ({}, {'TRANSXNET_MM_VERIFY_ON': 'cuda'}):
                label = 'kernels on CUDA' if env else "PyTorch's ops"
                out = subprocess.run(cmd, cwd=ROOT, text=True,
                                     capture_output=True,
                                     env={**os.environ, **env})
                report += [f'`{" ".join(cmd[1:])}` ({label}):', '',
                           out.stdout.strip() or out.stderr[-2000:], '']
    os.makedirs(args.out, exist_ok=True)
    path = osp.join(args.out, 'report.md')
    with open(path, 'w') as f:
        f.write('\n'.join(report) + '\n')
    print('\n'.join(report))
    verdict = f'FAILED: {", ".join(failed)}' if failed else \
        'every check passed'
    print(f'report: {path}; {verdict}')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
