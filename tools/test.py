"""Evaluate a checkpoint with the config's evaluator (COCO AP, mIoU, top-1).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out RESULTS.pkl]
        [--show-dir DIR] [--cfg-options k=v ...] [--launcher ...]

CHECKPOINT is one of ours or one of the authors' files as released: their
COCO and ADE20K models (mmdet 2.28 / mmseg 0.30: retinanet_tiny.pth,
maskrcnn_small.pth, sfpn_transxnet_base.pth, ...) and their ImageNet
classifiers (transx-t.pth.tar, ...). A file that does not hold every weight
of the config's model (another variant, another detector, a backbone-only
file) stops the tool with what it holds and what is missing.
"""
import argparse
import os.path as osp

from transxnet_mm.utils.checks import check_data
from transxnet_mm.utils.cli import (build_runner, missing_files_exit,
                                    parse_config, tool_parser)
from transxnet_mm.utils.compat import (cpu_distributed,
                                       trusted_local_checkpoints)
from transxnet_mm.apis import load_model_checkpoint


def build_parser() -> argparse.ArgumentParser:
    parser = tool_parser('Test (and evaluate) a model')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', help='dump the predictions to a pickle file')
    parser.add_argument('--show-dir',
                        help='draw the predictions into this dir (relative '
                        'to the work dir)')
    return parser


def main():
    args, cfg = parse_config(build_parser())
    if not osp.isfile(args.checkpoint):
        raise SystemExit(f'Checkpoint {args.checkpoint} does not exist.')
    if args.show_dir:
        hook = cfg.default_hooks.get('visualization')
        if hook is None:
            raise SystemExit('--show-dir needs a visualization hook in '
                             'default_hooks')
        if cfg.get('default_scope') == 'mmseg':
            # SegVisualizationHook has no test_out_dir: it draws through the
            # visualizer's backends; relative to the work dir as for mmdet
            # (WORK_DIR/SHOW_DIR/vis_data/vis_image/).
            hook.update(draw=True, interval=1)
            cfg.visualizer.save_dir = osp.join(cfg.work_dir, args.show_dir)
        else:
            hook.update(draw=True, test_out_dir=args.show_dir)
    with missing_files_exit():
        check_data(cfg, ['test_dataloader'])
    cfg.load_from = None  # loaded below, completely or not at all
    with cpu_distributed(cfg):
        runner = build_runner(cfg)
        if args.out:
            from mmengine.evaluator import DumpResults
            runner.test_evaluator.metrics.append(
                DumpResults(out_file_path=args.out))
        with trusted_local_checkpoints():
            try:
                load_model_checkpoint(runner.model, args.checkpoint,
                                      logger=runner.logger)
            except ValueError as e:  # CheckpointMismatch, unreadable file
                raise SystemExit(f'error: {e}')
            runner.test()


if __name__ == '__main__':
    main()
