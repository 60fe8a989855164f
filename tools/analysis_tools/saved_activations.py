"""What autograd keeps for backward in a training forward of the TransXNet
backbone, by module: where a training step's activation memory goes.

    python tools/analysis_tools/saved_activations.py [--arch t] \
        [--shape 384 384] [--batch 2] [--norm SyncBN] [--ddp] \
        [--authors-model ../shared/reference/authors_transxnet_dense.py]

Our backbone with the config norms (``SyncBN`` reverted as in a one-process
run, or ``BN``; ``--ddp`` keeps ``nn.SyncBatchNorm`` as DDP does, for which
the BatchNorm kernels step aside: outside a process group it normalises
with local statistics, so the count is DDP's), random weights, one forward
in training mode; each saved
storage counted once (:func:`transxnet_mm.analysis.saved_activations`).
With ``--authors-model`` the authors' file, holding the same weights, is
counted too (its total only: its modules have other names).
"""
import argparse

import torch
from mmengine.model import revert_sync_batchnorm

from transxnet_mm import TransXNet
from transxnet_mm.analysis import authors_model, saved_activations


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--arch', default='t', choices=['t', 's', 'b'])
    parser.add_argument('--shape', type=int, nargs=2, default=[384, 384],
                        metavar=('H', 'W'))
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--norm', default='SyncBN', choices=['BN', 'SyncBN'])
    parser.add_argument('--ddp', action='store_true',
                        help='keep SyncBN as nn.SyncBatchNorm (as under DDP)')
    parser.add_argument('--authors-model', metavar='PATH')
    parser.add_argument('--top', type=int, default=15,
                        help='modules to list (the rest are summed)')
    return parser.parse_args()


def main():
    args = parse_args()
    if args.ddp and args.norm != 'SyncBN':
        raise SystemExit('--ddp keeps SyncBN as DDP runs it: give '
                         '--norm SyncBN (the default)')
    torch.manual_seed(0)
    model = TransXNet(args.arch,
                      norm_cfg=dict(type=args.norm, requires_grad=True))
    if not args.ddp:
        model = revert_sync_batchnorm(model)
    x = torch.randn(args.batch, 3, *args.shape)
    ours = saved_activations(model.train(), x)
    total = sum(ours.values())
    print(f'TransXNet-{args.arch.upper()}, training forward at '
          f'{args.batch}x{args.shape[0]}x{args.shape[1]}, norms '
          f'{args.norm}{" (as under DDP)" if args.ddp else ""}: '
          f'{total / 2**20:.1f} MiB saved for backward')
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
