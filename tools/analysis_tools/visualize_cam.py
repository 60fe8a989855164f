"""Grad-CAM maps of a TransXNet classifier, per layer (the paper's Figs. 7
and 8b).

    python tools/analysis_tools/visualize_cam.py CONFIG [CHECKPOINT] IMAGE
        --target-layers stage1 stage2 stage3 stage4 [--target-class K]
        [--shape 224 224] [--num-images 4] --out cam.png
        [--cfg-options k=v ...] [--device cpu]

IMAGE is an image file or a folder (its first --num-images images, one row
each). Each row: the image resized to --shape, then one Grad-CAM overlay per
target layer (jet colormap, alpha 0.5). Grad-CAM of a layer's activation A:
channel weights = mean over space of d(class logit)/dA, map = ReLU(sum of the
weighted channels), upsampled to the image and rescaled to [0, 1]; the class
is the predicted top-1 unless --target-class is given.

Layers: stage1..stage4, dmixer.local / dmixer.global / dmixer.fused (the last
D-Mixer of stage 4), or any module name of the model. Classification
(mmpretrain) configs only. CHECKPOINT may be one of the authors' files
(transx-*.pth.tar, converted on the fly) or one of ours; without it the
weights are random (a line says so).
"""
import argparse
import os.path as osp
from typing import Dict, List, Optional, Sequence

import numpy as np
from mmengine.config import Config, DictAction
from mmengine.utils import ProgressBar
from visualize_erf import pyplot, save_figure

from transxnet_mm.apis import build_model
from transxnet_mm.utils.cli import tool_errors
from transxnet_mm.visualization import (Layer, accepted_names_help,
                                        describe_model, grad_cam,
                                        input_normalisation, list_images,
                                        load_image, overlay, resolve_layers,
                                        to_input)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='short layer names:\n' + accepted_names_help())
    parser.add_argument('config', help='classification config file')
    parser.add_argument('checkpoint', nargs='?',
                        help="checkpoint (ours or the authors'); random "
                        'weights without it')
    parser.add_argument('image', help='an image file or a folder of images')
    parser.add_argument('--target-layers', nargs='+',
                        default=['stage1', 'stage2', 'stage3', 'stage4'],
                        help='layers, one overlay each (default: stage1..4)')
    parser.add_argument('--target-class', type=int,
                        help='class index to explain (default: the '
                        'predicted top-1 of each image)')
    parser.add_argument('--shape', type=int, nargs=2, default=[224, 224],
                        metavar=('H', 'W'),
                        help='input size the image is resized to '
                        '(default 224 224)')
    parser.add_argument('--num-images', type=int, default=4,
                        help='for a folder: its first N images (default 4)')
    parser.add_argument('--alpha', type=float, default=0.5,
                        help='weight of the map in the overlay')
    parser.add_argument('--out', required=True, help='the figure (PNG)')
    parser.add_argument('--dpi', type=int, default=100, help='figure dpi')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings (key=value)')
    parser.add_argument('--device', default='cpu', help='e.g. cpu, cuda:0')
    return parser


def class_name(model, k: int) -> str:
    """The class's name: the checkpoint's dataset meta, else ImageNet's for
    1000 classes, else its index."""
    classes = (getattr(model, 'dataset_meta', None) or {}).get('classes')
    if classes is None and getattr(model.head, 'num_classes', 0) == 1000:
        from mmpretrain.datasets.categories import IMAGENET_CATEGORIES
        classes = IMAGENET_CATEGORIES
    name = classes[k].split(',')[0] if classes and k < len(classes) else ''
    return f'{k} {name}'.strip()


def plot_cam(images: Sequence[np.ndarray],
             cams: Sequence[Dict[str, np.ndarray]],
             layers: Sequence[Layer], row_titles: Sequence[str], title: str,
             out_file: str, alpha: float = 0.5, dpi: int = 100) -> str:
    """One row per image: the image, then its Grad-CAM overlay for each
    layer (the paper's Fig. 7 / 8b). Writes ``out_file`` and returns it."""
    plt = pyplot()
    rows, cols = len(images), len(layers) + 1
    fig, axes = plt.subplots(rows, cols, squeeze=False, layout='constrained',
                             figsize=(2.4 * cols, 2.5 * rows + 0.4))
    for r, (image, maps, row_title) in enumerate(zip(images, cams,
                                                     row_titles)):
        axes[r][0].imshow(image)
        axes[r][0].set_title(row_title, fontsize=7)
        for c, layer in enumerate(layers, 1):
            axes[r][c].imshow(overlay(image, maps[layer.name], alpha))
            axes[r][c].set_title(layer.name, fontsize=8)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(title, fontsize=8)
    return save_figure(fig, out_file, dpi)


def main(argv: Optional[List[str]] = None) -> list:
    args = build_parser().parse_args(argv)
    if args.num_images < 1 or min(args.shape) < 1:
        raise SystemExit('error: --num-images and --shape must be positive')
    with tool_errors():
        cfg = Config.fromfile(args.config)
        if args.cfg_options:
            cfg.merge_from_dict(args.cfg_options)
        scope = cfg.get('default_scope', 'mmdet')
        if scope != 'mmpretrain' or 'head' not in cfg.model:
            raise SystemExit(
                f'error: Grad-CAM explains a class score, so it needs a '
                f'classification config (mmpretrain); {args.config} is a '
                f'{scope} config. For its backbone use '
                f'tools/analysis_tools/visualize_erf.py.')
        paths = list_images(args.image, args.num_images)
        model = build_model(cfg, args.checkpoint, args.device)
        layers = resolve_layers(model, args.target_layers)
    if args.checkpoint is None:
        print('random weights (no checkpoint given)')
    mean, std, rgb = input_normalisation(model)
    images, cams, row_titles = [], [], []
    bar = ProgressBar(len(paths))
    for path in paths:
        image = load_image(path, args.shape)
        with tool_errors():
            maps, k, prob = grad_cam(model, layers,
                                     to_input(image, mean, std, rgb,
                                              args.device),
                                     args.target_class)
        images.append(image)
        cams.append(maps)
        row_titles.append(f'{osp.basename(path)}\nclass {class_name(model, k)}'
                          f' (p={prob:.3f})')
        bar.update()
    print()
    for path, title in zip(paths, row_titles):
        print(f'{path}: Grad-CAM of {title.splitlines()[1]}')
    weights = ('RANDOM WEIGHTS (no checkpoint): not a trained model\'s maps'
               if args.checkpoint is None else
               f'weights: {osp.basename(args.checkpoint)}')
    title = (f'Grad-CAM of {describe_model(model)} '
             f'({osp.basename(args.config)}) at {args.shape[0]}x'
             f'{args.shape[1]}\n{weights}')
    out = plot_cam(images, cams, layers, row_titles, title, args.out,
                   args.alpha, args.dpi)
    print(f'figure: {out}')
    return cams


if __name__ == '__main__':
    main()
