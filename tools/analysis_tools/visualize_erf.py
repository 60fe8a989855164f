"""Effective receptive field (ERF) of TransXNet layers, averaged over images
(the paper's Figs. 2, 6 and 8a).

    python tools/analysis_tools/visualize_erf.py CONFIG [CHECKPOINT]
        --images DIR [--num-images 100] [--layer stage1 stage2 stage3 stage4]
        [--shape 224 224] --out erf.png [--save-npy erf.npz]
        [--cfg-options k=v ...] [--device cpu]

The ERF of a layer (Luo et al. 2016, computed as RepLKNet does): the gradient
of the centre of its output map, summed over channels, with respect to the
input image, absolute, summed over the colour channels and averaged over the
images; drawn as log10(1 + ERF) rescaled to [0, 1], one panel per layer. For
each layer it prints the area ratio of the smallest centred square holding
20 / 30 / 50 / 99% of the (log-scaled) contribution: the usual ERF score,
larger for a larger ERF.

Layers: stage1..stage4, dmixer.local / dmixer.global / dmixer.fused (the last
D-Mixer of stage 4: IDConv output, OSRA output, after the STE), or any module
name of the backbone. Classification configs and the backbone of detection
and segmentation configs. CHECKPOINT is a whole model of the config: ours,
or the authors' (their ImageNet transx-*.pth.tar with a classification
config, their COCO / ADE20K files with ours); without it the weights are
random (a line says so).
"""
import argparse
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence

import numpy as np
from mmengine.config import Config, DictAction
from mmengine.utils import ProgressBar

from transxnet_mm.apis import build_model
from transxnet_mm.utils.cli import tool_errors
from transxnet_mm.visualization import (ERF_THRESHOLDS, Layer,
                                        accepted_names_help, check_inside,
                                        describe_model, erf_maps, erf_score,
                                        erf_table, input_normalisation,
                                        list_images, load_image, log_scaled,
                                        resolve_layers, to_input)
from transxnet_mm.visualization.layers import find_backbone


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='short layer names:\n' + accepted_names_help())
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', nargs='?',
                        help="checkpoint (ours or the authors'); random "
                        'weights without it')
    parser.add_argument('--images', required=True,
                        help='folder of images (.jpg, .jpeg, .png, .bmp)')
    parser.add_argument('--num-images', type=int, default=100,
                        help='use the first N images, sorted by name '
                        '(default 100, as the paper)')
    parser.add_argument('--layer', nargs='+',
                        default=['stage1', 'stage2', 'stage3', 'stage4'],
                        help='layers, one panel each (default: stage1..4)')
    parser.add_argument('--shape', type=int, nargs=2, default=[224, 224],
                        metavar=('H', 'W'),
                        help='input size the images are resized to '
                        '(default 224 224)')
    parser.add_argument('--out', required=True, help='the figure (PNG)')
    parser.add_argument('--save-npy',
                        help='also save the ERF maps: .npy one (layers, H, W) '
                        'array in --layer order, .npz one array per layer')
    parser.add_argument('--dpi', type=int, default=100, help='figure dpi')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings (key=value)')
    parser.add_argument('--device', default='cpu', help='e.g. cpu, cuda:0')
    return parser


def pyplot():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, out_file: str, dpi: int) -> str:
    """Write ``fig`` to ``out_file`` (its folder made if needed); the path."""
    import matplotlib.pyplot as plt
    os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)
    fig.savefig(out_file, dpi=dpi)
    plt.close(fig)
    return out_file


def plot_erf(maps: Dict[str, np.ndarray], layers: Sequence[Layer],
             title: str, out_file: str, dpi: int = 100,
             max_cols: int = 4) -> str:
    """One panel per layer (rows of at most ``max_cols``): the
    :func:`log_scaled` ERF with a colour bar, titled with the layer's name,
    module and 50% area ratio; ``title`` above all. Writes ``out_file``
    (PNG) and returns it."""
    plt = pyplot()
    n = len(layers)
    cols = min(n, max_cols)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, squeeze=False, layout='constrained',
                             figsize=(3.3 * cols, 3.2 * rows + 0.5))
    for ax in axes.flat[n:]:
        ax.axis('off')
    for ax, layer in zip(axes.flat, layers):
        im = ax.imshow(log_scaled(maps[layer.name]), cmap='RdYlGn',
                       vmin=0, vmax=1)
        area = erf_score(maps[layer.name], [0.5])[0]
        ax.set_title(f'{layer.name}\n{layer.path}\n50% area {area:.4f}',
                     fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
    fig.suptitle(title, fontsize=8)
    return save_figure(fig, out_file, dpi)


def save_maps(path: str, maps: dict, names: List[str]) -> None:
    if path.endswith('.npz'):
        np.savez(path, **maps)
    else:
        np.save(path, np.stack([maps[n] for n in names]))


def main(argv: Optional[List[str]] = None) -> dict:
    args = build_parser().parse_args(argv)
    if args.num_images < 1 or min(args.shape) < 1:
        raise SystemExit('error: --num-images and --shape must be positive')
    with tool_errors():
        cfg = Config.fromfile(args.config)
        if args.cfg_options:
            cfg.merge_from_dict(args.cfg_options)
        paths = list_images(args.images, args.num_images)
        model = build_model(cfg, args.checkpoint, args.device)
        layers = resolve_layers(model, args.layer)
        check_inside(layers, model)
    if args.checkpoint is None:
        print('random weights (no checkpoint given)')
    backbone, _ = find_backbone(model)
    mean, std, rgb = input_normalisation(model)
    print(f'ERF of {len(layers)} layer(s) over {len(paths)} image(s) of '
          f'{args.images} at {args.shape[0]}x{args.shape[1]}')
    bar = ProgressBar(len(paths))
    inputs = (to_input(load_image(p, args.shape), mean, std, rgb,
                       args.device) for p in paths)
    with tool_errors():
        maps = erf_maps(backbone, layers, inputs, on_image=bar.update)
    print()
    print('High-contribution area ratio (smallest centred square holding '
          'the share of log10(1 + ERF); larger = larger ERF):')
    print(erf_table(maps, layers, ERF_THRESHOLDS))
    weights = ('RANDOM WEIGHTS (no checkpoint): not a trained model\'s ERF'
               if args.checkpoint is None else
               f'weights: {osp.basename(args.checkpoint)}')
    title = (f'ERF of {describe_model(model)} ({osp.basename(args.config)}), '
             f'log10(1 + ERF) rescaled, mean of {len(paths)} image(s) at '
             f'{args.shape[0]}x{args.shape[1]}\n{weights}')
    print(f'figure: {plot_erf(maps, layers, title, args.out, args.dpi)}')
    if args.save_npy:
        save_maps(args.save_npy, maps, [layer.name for layer in layers])
        print(f'maps: {args.save_npy}')
    return maps


if __name__ == '__main__':
    main()
