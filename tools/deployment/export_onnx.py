"""Export one of our detection, segmentation or classification configs to
ONNX (the network's raw outputs), and check it with onnxruntime.

    python tools/deployment/export_onnx.py CONFIG [CHECKPOINT] --out FILE.onnx
        [--shape H W] [--dynamic] [--verify] [--image IMG]

The input of the file is the batch the config's data preprocessor makes
(normalised, RGB, padded); its outputs and the post-processing that runs in
PyTorch are listed in :mod:`transxnet_mm.deploy` and docs/deployment.md.
Without CHECKPOINT the randomly initialised model is
exported (for trying the tool; a log line says so).

``--verify`` runs the file with onnxruntime on a real image (the first COCO
sample image unless ``--image``), preprocessed by the config's own test
pipeline and resized to the export size, prints ``max abs diff`` and
``max rel diff`` (relative to each output's largest magnitude) against
PyTorch, and exits 1 above the tolerance (transxnet_mm.deploy.RTOL). With
``--dynamic`` it checks two other sizes (one not a multiple of 32) and a
batch of 2 as well.
"""
import argparse
import os
import os.path as osp
import sys
import time

import torch
import torch.nn.functional as F
from mmengine.config import DictAction

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SAMPLE_IMAGE_DIR = osp.join(ROOT, 'data', 'coco_sample', 'val2017')


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', nargs='?', default=None,
                        help='checkpoint file (random weights if omitted)')
    parser.add_argument('--out', required=True, help='the .onnx file')
    parser.add_argument('--shape', type=int, nargs='+', default=None,
                        help='export size H W (default: the size the test '
                        'pipeline gives the image)')
    parser.add_argument('--dynamic', action='store_true',
                        help='batch, height and width free in the file')
    parser.add_argument('--verify', action='store_true',
                        help='compare onnxruntime with PyTorch on a real '
                        'image')
    parser.add_argument('--image', default=None,
                        help='image for the example input and --verify '
                        '(default: the first COCO sample image)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    return parser.parse_args()


def sample_image(path=None) -> str:
    if path is not None:
        return path
    if osp.isdir(SAMPLE_IMAGE_DIR):
        images = sorted(f for f in os.listdir(SAMPLE_IMAGE_DIR)
                        if f.endswith('.jpg'))
        if images:
            return osp.join(SAMPLE_IMAGE_DIR, images[0])
    raise SystemExit(
        f'No image given and no COCO sample in {SAMPLE_IMAGE_DIR}: pass '
        f'--image IMG, or fetch the sample with python '
        f'tools/dataset_converters/fetch_coco_sample.py')


def resized(x: torch.Tensor, batch: int, h: int, w: int) -> torch.Tensor:
    """The preprocessed image at another size (bilinear), repeated (and
    flipped for the second copy) to ``batch`` images."""
    if tuple(x.shape[2:]) != (h, w):
        x = F.interpolate(x, size=(h, w), mode='bilinear',
                          align_corners=False)
    copies = [x if i % 2 == 0 else x.flip(-1) for i in range(batch)]
    return torch.cat(copies)[:batch]


def main() -> int:
    args = parse_args()
    from transxnet_mm import deploy

    try:
        shape = deploy.check_shape(args.shape) if args.shape else None
        cfg, model, task = deploy.load_model(args.config, args.checkpoint,
                                             args.cfg_options)
        image = sample_image(args.image)
        inputs, _ = deploy.prepare(model, [image])
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f'export_onnx: {e}')
    if args.checkpoint is None:
        print('No checkpoint: exporting the randomly initialised model.')
    h, w = shape or inputs.shape[2:]
    if args.dynamic and deploy.dynamic_example_size(h, w) != (h, w):
        h, w = deploy.dynamic_example_size(h, w)
        print(f'Exporting at {h}x{w}: at 224x224 the position biases need '
              f'no resize, and a --dynamic file needs the resize recorded.')
    example = resized(inputs, 1, h, w)
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    start = time.perf_counter()
    names = deploy.export(model, task, example, args.out, args.dynamic)
    print(f'Wrote {args.out} ({osp.getsize(args.out) / 2**20:.1f} MiB, '
          f'opset {deploy.OPSET}, '
          f'{"dynamic batch/height/width" if args.dynamic else f"input 1x3x{h}x{w}"}'
          f') in {time.perf_counter() - start:.0f} s; outputs: '
          f'{", ".join(names)}')
    if not args.verify:
        return 0
    session = deploy.OnnxModel(args.out)
    sizes = deploy.verify_sizes(h, w) if args.dynamic else [(1, h, w)]
    worst = 0.
    for batch, hh, ww in sizes:
        x = resized(inputs, batch, hh, ww)
        ref = deploy.torch_outputs(model, task, x)
        abs_diff, rel_diff = deploy.differences(ref, session(x))
        worst = max(worst, rel_diff)
        print(f'{osp.basename(image)} as {batch}x3x{hh}x{ww}: '
              f'max abs diff {abs_diff:.3g}, max rel diff {rel_diff:.3g}')
    if worst > deploy.RTOL:
        print(f'FAILED: max rel diff {worst:.3g} > tolerance '
              f'{deploy.RTOL:g}')
        return 1
    print(f'OK: onnxruntime matches PyTorch (max rel diff {worst:.3g} <= '
          f'{deploy.RTOL:g})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
