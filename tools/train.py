"""Train a detector, segmentor or classifier from one of our configs.

    python tools/train.py configs/retinanet/retinanet_transxnet_s.py [--work-dir DIR]
        [--resume [CKPT]] [--amp] [--auto-scale-lr] [--cfg-options k=v ...]
        [--launcher {none,pytorch,slurm,mpi}]

The arguments are those of mmdet's tools/train.py; the toolbox (mmdet, mmseg or
mmpretrain) is the config's ``default_scope``.
"""
import argparse

import torch

from transxnet_mm.checks import check_data, check_pretrained
from transxnet_mm.cli import (build_runner, missing_files_exit, parse_config,
                              tool_parser)
from transxnet_mm.compat import (setup_cpu_distributed,
                                 trusted_local_checkpoints)


def build_parser() -> argparse.ArgumentParser:
    parser = tool_parser('Train a model')
    parser.add_argument('--amp', action='store_true',
                        help='automatic mixed precision (AmpOptimWrapper)')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the lr by the actual total batch size '
                        'against the config\'s auto_scale_lr.base_batch_size')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from this checkpoint, or from the latest checkpoint in '
        'the work dir when no path is given')
    return parser


def main():
    args, cfg = parse_config(build_parser())
    if args.amp:
        if not torch.cuda.is_available():
            raise SystemExit('--amp (AmpOptimWrapper, fp16 with loss '
                             'scaling) needs a GPU; on CPU train without it '
                             '(fp32)')
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.auto_scale_lr:
        if not cfg.get('auto_scale_lr') or \
                'base_batch_size' not in cfg.auto_scale_lr:
            raise ValueError('--auto-scale-lr needs auto_scale_lr.'
                             'base_batch_size in the config')
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume

    with missing_files_exit():
        check_data(cfg, ['train_dataloader'] +
                   (['val_dataloader'] if cfg.get('val_cfg') else []))
        if not cfg.get('resume') and not cfg.get('load_from'):
            check_pretrained(cfg)
    setup_cpu_distributed(cfg)
    runner = build_runner(cfg)
    with trusted_local_checkpoints():
        runner.train()


if __name__ == '__main__':
    main()
