"""Evaluate a checkpoint with the config's evaluator (COCO AP, mIoU, top-1).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out RESULTS.pkl]
        [--show-dir DIR] [--cfg-options k=v ...] [--launcher ...]

CHECKPOINT may also be one of the authors' ImageNet files (transx-t.pth.tar,
...): it is converted to our key names in a temporary file first.
"""
import argparse
import os.path as osp
import tempfile

from transxnet_mm.checks import check_data
from transxnet_mm.cli import (build_runner, missing_files_exit, parse_config,
                              tool_parser)
from transxnet_mm.compat import (setup_cpu_distributed,
                                 trusted_local_checkpoints)
from transxnet_mm.models.convert import official_to_mm_checkpoint


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
    setup_cpu_distributed(cfg)

    # The authors' released checkpoints (transx-*.pth.tar) use their own key
    # names, which the runner's loader cannot map: convert them for this run.
    with tempfile.TemporaryDirectory(prefix='transxnet_') as tmp_dir:
        converted = osp.join(tmp_dir, 'converted.pth')
        summary = official_to_mm_checkpoint(args.checkpoint, converted)
        cfg.load_from = converted if summary else args.checkpoint
        runner = build_runner(cfg)
        if args.out:
            from mmengine.evaluator import DumpResults
            runner.test_evaluator.metrics.append(
                DumpResults(out_file_path=args.out))
        if summary:
            runner.logger.info(
                f"{args.checkpoint} holds the authors' TransXNet keys: "
                f'converted to our names ({summary}) in {converted}, loaded '
                f'from there.')
        with trusted_local_checkpoints():
            runner.test()


if __name__ == '__main__':
    main()
