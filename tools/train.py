"""Train a detector, segmentor or classifier from one of our configs.

    python tools/train.py configs/retinanet_transxnet_s.py [--work-dir DIR]
        [--resume [CKPT]] [--amp] [--auto-scale-lr] [--cfg-options k=v ...]
        [--launcher {none,pytorch,slurm,mpi}]

The arguments are those of mmdet's tools/train.py; the toolbox (mmdet, mmseg or
mmpretrain) is the config's ``default_scope``.
"""
import argparse
import os.path as osp

import torch

from transxnet_mm.utils.checks import check_data, check_pretrained
from transxnet_mm.utils.cli import (build_runner, missing_files_exit,
                                    parse_config, tool_parser)
from transxnet_mm.utils.compat import (cpu_distributed,
                                       trusted_local_checkpoints)
from transxnet_mm.models.utils.ckpt_convert import read_checkpoint


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


def check_resumable(path: str) -> None:
    """Only an MMEngine training checkpoint resumes (it keeps the message
    hub: iteration, schedulers' state); the authors' mmdet 2 / mmseg 0.x
    files serve ``load_from`` (fine-tuning) and testing."""
    if not osp.isfile(path):
        raise SystemExit(f'error: --resume {path}: no such file')
    with trusted_local_checkpoints():
        ckpt = read_checkpoint(path)
    if 'message_hub' not in ckpt:
        meta = ckpt.get('meta') or {}
        made = next((f'{k.split("_")[0]} {v}' for k, v in meta.items()
                     if k.endswith('_version')), 'another trainer')
        raise SystemExit(
            f'error: --resume {path}: the file was written by {made}, not '
            f'by an MMEngine run, so it has no training state to resume. '
            f'To start from its weights set load_from={path!r} '
            f'(--cfg-options load_from={path}); to evaluate it, '
            f'tools/test.py CONFIG {path}.')


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
        check_resumable(args.resume)
        cfg.resume, cfg.load_from = True, args.resume

    with missing_files_exit():
        check_data(cfg, ['train_dataloader'] +
                   (['val_dataloader'] if cfg.get('val_cfg') else []))
        if not cfg.get('resume') and not cfg.get('load_from'):
            check_pretrained(cfg)
    with cpu_distributed(cfg):
        runner = build_runner(cfg)
        with trusted_local_checkpoints():
            runner.train()


if __name__ == '__main__':
    main()
