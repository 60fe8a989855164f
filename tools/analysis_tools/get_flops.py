"""Parameters and FLOPs of one of our configs at a given input shape.

    python tools/analysis_tools/get_flops.py CONFIG [--shape 800 1280]

FLOPs are mmengine.analysis counts (one multiply-add = one FLOP, the
OpenMMLab convention) of the model's tensor-mode forward, as mmdet's own
get_flops runs it. Two figures are printed:

* paper convention: convolutions, linear layers, norms, pooling and
  upsampling, but not OSRA's two attention matrix products (q @ k^T and
  attn @ v). This is how the paper's Tables IV and V count;
* with attention: the same plus those products.
"""
import argparse

from mmengine.config import Config, DictAction

from benchmark_utils import DEFAULT_SHAPES, complexity, dummy_inputs

from transxnet_mm.apis import build_model


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='config file')
    parser.add_argument('--shape', type=int, nargs='+',
                        help='input H W (or one size for both); default: '
                        '800 1280 (mmdet), 512 512 (mmseg), 224 224 '
                        '(mmpretrain)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings (key=value)')
    return parser.parse_args()


def main():
    args = parse_args()
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    model, scope = build_model(cfg), cfg.default_scope
    shape = tuple(args.shape) if args.shape else DEFAULT_SHAPES[scope]
    shape = shape * 2 if len(shape) == 1 else shape
    res = complexity(model, *dummy_inputs(scope, shape))
    line = '=' * 64
    print(f'{line}\nConfig: {args.config}\nInput shape: 1x3x{shape[0]}x{shape[1]}'
          f'\nParams: {res["params"] / 1e6:.2f} M'
          f'\nFLOPs, paper convention (no attention products): '
          f'{res["flops_paper"] / 1e9:.1f} G'
          f'\nFLOPs with the attention products: '
          f'{res["flops_with_attention"] / 1e9:.1f} G\n{line}')


if __name__ == '__main__':
    main()
