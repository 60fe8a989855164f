"""What autograd keeps for backward in a training forward of the TransXNet
backbone, by module: where a training step's activation memory goes.

    python tools/analysis_tools/saved_activations.py [--arch t] \
        [--shape 384 384] [--batch 2] [--norm SyncBN] [--off KERNEL ...] \
        [--authors-model ../shared/reference/authors_transxnet_dense.py]

Our backbone with the config norms (``SyncBN`` reverted as in a one-process
run, or ``BN``; under DDP the training kernels take ``nn.SyncBatchNorm``
alike, and keep the same maps), random weights, one forward in training
mode; each saved storage counted once
(:func:`benchmark_utils.saved_activations`). ``--off`` turns kernels
of :mod:`transxnet_mm.ops` off, to see what each one saves.
With ``--authors-model`` the authors' file, holding the same weights, is
counted too (its total only: its modules have other names).
"""
import argparse

import torch
from mmengine.model import revert_sync_batchnorm

from benchmark_utils import authors_model, saved_activations

from transxnet_mm import TransXNet
from transxnet_mm.ops import KERNELS, use_kernels


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--arch', default='t', choices=['t', 's', 'b'])
    parser.add_argument('--shape', type=int, nargs=2, default=[384, 384],
                        metavar=('H', 'W'))
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--norm', default='SyncBN', choices=['BN', 'SyncBN'])
    parser.add_argument('--off', nargs='+', default=[], choices=KERNELS,
                        metavar='KERNEL', help='kernels to turn off: '
                        + ', '.join(KERNELS))
    parser.add_argument('--authors-model', metavar='PATH')
    parser.add_argument('--top', type=int, default=15,
                        help='modules to list (the rest are summed)')
    return parser.parse_args()


def main():
    args = parse_args()
    torch.manual_seed(0)
    model = revert_sync_batchnorm(
        TransXNet(args.arch, norm_cfg=dict(type=args.norm,
                                           requires_grad=True)))
    x = torch.randn(args.batch, 3, *args.shape)
    with use_kernels(False, *args.off) if args.off else use_kernels(True):
        ours = saved_activations(model.train(), x)
    total = sum(ours.values())
    off = f', kernels off: {" ".join(args.off)}' if args.off else ''
    print(f'TransXNet-{args.arch.upper()}, training forward at '
          f'{args.batch}x{args.shape[0]}x{args.shape[1]}, norms '
          f'{args.norm}{off}: {total / 2**20:.1f} MiB saved for backward')
    print('| module | MiB | share |\n|---|---|---|')
    rows = list(ours.items())
    rest = sum(v for _, v in rows[args.top:])
    for name, nbytes in rows[:args.top] + ([('(the rest)', rest)]
                                           if rest else []):
        print(f'| {name or "(top)"} | {nbytes / 2**20:.1f} | '
              f'{100 * nbytes / total:.1f}% |')
    if args.authors_model:
        theirs = authors_model(args.authors_model, args.arch,
                               model.state_dict())
        their_total = sum(saved_activations(theirs.train(), x).values())
        print(f"\nthe authors' file: {their_total / 2**20:.1f} MiB "
              f'(ours / theirs: {total / their_total:.2f})')


if __name__ == '__main__':
    main()
