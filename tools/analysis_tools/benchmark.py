"""Inference speed (images/s) of one of our configs' models.

    python tools/analysis_tools/benchmark.py CONFIG [--shape 800 1280]
        [--batch-size 1] [--runs 10] [--warmup 2] [--device cpu|cuda]
        [--threads N]

Times the network's tensor-mode forward (backbone, neck and heads; no data
loading or post-processing) on random images of the given shape, without
gradients, after warm-up runs, and prints the median over the runs.
"""
import argparse
import platform

import torch
from mmengine.config import Config, DictAction

from benchmark_utils import DEFAULT_SHAPES, dummy_inputs, median, median_time

from transxnet_mm.apis import build_model


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='config file')
    parser.add_argument('--shape', type=int, nargs='+',
                        help='input H W (or one size); default per toolbox')
    parser.add_argument('--batch-size', type=int, default=1)
    parser.add_argument('--runs', type=int, default=10)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--device', default='cuda' if
                        torch.cuda.is_available() else 'cpu')
    parser.add_argument('--threads', type=int,
                        help='CPU threads (torch.set_num_threads)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings (key=value)')
    return parser.parse_args()


def main():
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    model, scope = build_model(cfg, device=args.device), cfg.default_scope
    shape = tuple(args.shape) if args.shape else DEFAULT_SHAPES[scope]
    shape = shape * 2 if len(shape) == 1 else shape
    inputs, kwargs = dummy_inputs(scope, shape, args.batch_size, args.device)
    sync = torch.cuda.synchronize if args.device.startswith('cuda') else None

    def forward():
        with torch.no_grad():
            model(inputs, **kwargs)

    times = median_time(forward, args.runs, args.warmup, sync)
    med = median(times)
    device = (torch.cuda.get_device_name() if args.device.startswith('cuda')
              else f'{platform.processor() or platform.machine()} CPU, '
              f'{torch.get_num_threads()} threads')
    print(f'{args.config}: {args.batch_size}x3x{shape[0]}x{shape[1]} on '
          f'{device}, torch {torch.__version__}\n'
          f'median {med * 1000:.1f} ms per batch over {args.runs} runs '
          f'(min {min(times) * 1000:.1f}, max {max(times) * 1000:.1f}) = '
          f'{args.batch_size / med:.2f} images/s')


if __name__ == '__main__':
    main()
