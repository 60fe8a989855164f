"""Run a config + checkpoint on an image or a folder and draw the results.

    python tools/image_demo.py IMG_OR_DIR CONFIG CHECKPOINT [--out-dir DIR]
        [--score-thr 0.3] [--device cpu]

Detection configs draw boxes (and masks) with mmdet's visualizer; one image
file per input is written to ``--out-dir``.
"""
import argparse
import os
import os.path as osp
from typing import List

import mmcv
from mmengine.config import Config

from transxnet_mm.compat import trusted_local_checkpoints

IMAGE_EXTS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp')


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('img', help='an image file or a folder of images')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out-dir', default='outputs/demo',
                        help='where the drawn images are written')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='detections below this score are not drawn')
    parser.add_argument('--device', default='cpu', help='e.g. cpu, cuda:0')
    return parser.parse_args()


def list_images(path: str) -> List[str]:
    if osp.isdir(path):
        files = sorted(
            osp.join(path, f) for f in os.listdir(path)
            if f.lower().endswith(IMAGE_EXTS))
        if not files:
            raise SystemExit(f'No image ({", ".join(IMAGE_EXTS)}) in {path}')
        return files
    if not osp.isfile(path):
        raise SystemExit(f'Image {path} does not exist')
    return [path]


def detect(cfg: Config, args, images: List[str]) -> List[str]:
    from mmdet.apis import inference_detector, init_detector
    from mmdet.registry import VISUALIZERS

    with trusted_local_checkpoints():
        model = init_detector(cfg, args.checkpoint, device=args.device)
    visualizer = VISUALIZERS.build(model.cfg.visualizer)
    visualizer.dataset_meta = model.dataset_meta
    written = []
    for path in images:
        result = inference_detector(model, path)
        out_file = osp.join(args.out_dir, osp.basename(path))
        visualizer.add_datasample(
            osp.basename(path),
            mmcv.imread(path, channel_order='rgb'),
            data_sample=result,
            draw_gt=False,
            pred_score_thr=args.score_thr,
            out_file=out_file)
        n = int((result.pred_instances.scores >= args.score_thr).sum())
        print(f'{path}: {n} detections >= {args.score_thr} -> {out_file}')
        written.append(out_file)
    return written


def main():
    args = parse_args()
    images = list_images(args.img)
    if not osp.isfile(args.checkpoint):
        raise SystemExit(f'Checkpoint {args.checkpoint} does not exist')
    cfg = Config.fromfile(args.config)  # imports transxnet_mm
    os.makedirs(args.out_dir, exist_ok=True)
    scope = cfg.get('default_scope', 'mmdet')
    if scope == 'mmdet':
        detect(cfg, args, images)
    else:
        raise SystemExit(f'image_demo does not handle {scope} configs yet')


if __name__ == '__main__':
    main()
