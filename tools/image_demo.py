"""Run a config + checkpoint on an image or a folder and draw the results.

    python tools/image_demo.py IMG_OR_DIR CONFIG CHECKPOINT [--out-dir DIR]
        [--score-thr 0.3] [--draw-gt] [--device cpu]

Detection configs draw boxes (and masks) with mmdet's visualizer; one image
file per input is written to ``--out-dir``. With ``--draw-gt`` the image's
ground truth (from the config's val or test dataset, found by file name) is
drawn on the left and the detections on the right, written as PNG. Segmentation configs draw the
predicted class masks with mmseg's visualizer, likewise one image file per
input. Classification configs print the top-5 classes of each image with
their scores. CHECKPOINT is one of ours or one of the authors' files as
released (their COCO / ADE20K models, their ImageNet classifiers); one that
does not hold every weight of the config's model stops the tool.
"""
import argparse
import os
import os.path as osp
from typing import List

import mmcv
from mmengine.config import Config

from transxnet_mm.apis import build_visualizer, load_model_checkpoint
from transxnet_mm.utils.compat import trusted_local_checkpoints

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
    parser.add_argument('--draw-gt', action='store_true',
                        help='detection: draw the ground truth of the '
                        "config's val/test dataset beside the detections "
                        '(as <name>.png)')
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


def draw(visualizer, path: str, result, out_dir: str,
         draw_gt: bool = False, **kwargs) -> str:
    """Draw one prediction on its image with the toolbox's visualizer and
    write it to ``out_dir`` under the image's name (as PNG, lossless, when
    the ground truth is drawn beside it); returns that path."""
    name = osp.basename(path)
    if draw_gt:
        name = osp.splitext(name)[0] + '.png'
    out_file = osp.join(out_dir, name)
    visualizer.add_datasample(
        osp.basename(path),
        mmcv.imread(path, channel_order='rgb'),
        data_sample=result,
        draw_gt=draw_gt,
        out_file=out_file,
        **kwargs)
    return out_file


def ground_truth(cfg: Config, images: List[str]) -> dict:
    """The boxes and labels of ``images`` (by file name) in the config's
    val and test datasets, in image coordinates, crowd regions left out."""
    import torch
    from mmdet.registry import DATASETS
    from mmengine.structures import InstanceData

    found = {}
    names = {osp.basename(p) for p in images}
    for key in ('val_dataloader', 'test_dataloader'):
        if cfg.get(key) is None:
            continue
        dataset = DATASETS.build(cfg[key].dataset)
        for i in range(len(dataset)):
            info = dataset.get_data_info(i)
            name = osp.basename(info['img_path'])
            if name not in names:
                continue
            kept = [a for a in info['instances'] if not a['ignore_flag']]
            found[name] = InstanceData(
                bboxes=torch.tensor([a['bbox'] for a in kept],
                                    dtype=torch.float32).reshape(-1, 4),
                labels=torch.tensor([a['bbox_label'] for a in kept],
                                    dtype=torch.long))
    missing = sorted(names - set(found))
    if missing:
        raise SystemExit(
            f'--draw-gt: {", ".join(missing)} is in neither the val nor the '
            f'test dataset of the config; drop --draw-gt to draw the '
            f'detections alone')
    return found


def load_weights(model, checkpoint: str) -> dict:
    """Every weight of ``model`` from ``checkpoint`` (ours or the authors'
    files), or the tool stops saying what the file holds; its meta."""
    with trusted_local_checkpoints():
        try:
            return load_model_checkpoint(model, checkpoint)
        except ValueError as e:  # CheckpointMismatch, unreadable file
            raise SystemExit(f'error: {e}')


def detect(cfg: Config, args, images: List[str]) -> List[str]:
    from mmdet.apis import inference_detector, init_detector

    model = init_detector(cfg, None, device=args.device)
    load_weights(model, args.checkpoint)
    visualizer = build_visualizer(model)
    gts = ground_truth(cfg, images) if args.draw_gt else {}
    written = []
    for path in images:
        result = inference_detector(model, path)
        if args.draw_gt:
            result.gt_instances = gts[osp.basename(path)]
        out_file = draw(visualizer, path, result, args.out_dir,
                        draw_gt=args.draw_gt, pred_score_thr=args.score_thr)
        n = int((result.pred_instances.scores >= args.score_thr).sum())
        print(f'{path}: {n} detections >= {args.score_thr} -> {out_file}')
        written.append(out_file)
    return written


def segment(cfg: Config, args, images: List[str]) -> List[str]:
    """Draw the predicted class masks (mmseg's visualizer of the config)
    of each image into ``--out-dir`` and print its largest classes."""
    import numpy as np
    from mmseg.apis import inference_model, init_model

    model = init_model(cfg, None, device=args.device)
    load_weights(model, args.checkpoint)
    visualizer = build_visualizer(model)
    classes = model.dataset_meta['classes']
    written = []
    for path in images:
        result = inference_model(model, path)
        out_file = draw(visualizer, path, result, args.out_dir)
        labels = result.pred_sem_seg.data.cpu().numpy().ravel()
        counts = np.bincount(labels, minlength=len(classes))
        top = [f'{classes[i].strip()} {counts[i] / labels.size:.0%}'
               for i in counts.argsort()[::-1][:3] if counts[i]]
        print(f'{path}: {", ".join(top)} -> {out_file}')
        written.append(out_file)
    return written


def classify(cfg: Config, args, images: List[str]) -> List[List[tuple]]:
    """Print the top-5 classes of each image with their scores.

    Class names come from the checkpoint's dataset meta, else ImageNet's
    (mmpretrain's ImageNet metainfo).
    """
    from mmpretrain.apis import ImageClassificationInferencer
    from mmpretrain.datasets.categories import IMAGENET_CATEGORIES

    inferencer = ImageClassificationInferencer(cfg, pretrained=False,
                                               device=args.device)
    meta = load_weights(inferencer.model, args.checkpoint)
    classes = (meta.get('dataset_meta') or {}).get('classes') or \
        IMAGENET_CATEGORIES
    top5 = []
    for path in images:
        scores = inferencer(path)[0]['pred_scores']
        print(f'{path}: top-5 of {len(scores)} classes')
        best = []
        for rank, i in enumerate(scores.argsort()[::-1][:5], 1):
            name = classes[i] if i < len(classes) else f'class {i}'
            print(f'  {rank}. {scores[i]:.4f}  {name} ({i})')
            best.append((name, float(scores[i])))
        top5.append(best)
    return top5


def main():
    args = parse_args()
    images = list_images(args.img)
    if not osp.isfile(args.checkpoint):
        raise SystemExit(f'Checkpoint {args.checkpoint} does not exist')
    cfg = Config.fromfile(args.config)  # imports transxnet_mm
    os.makedirs(args.out_dir, exist_ok=True)
    scope = cfg.get('default_scope', 'mmdet')
    if args.draw_gt and scope != 'mmdet':
        raise SystemExit('--draw-gt draws detection ground truth; drop it '
                         f'for {scope} configs')
    if scope == 'mmdet':
        detect(cfg, args, images)
    elif scope == 'mmseg':
        segment(cfg, args, images)
    elif scope == 'mmpretrain':
        classify(cfg, args, images)
    else:
        raise SystemExit(f'image_demo does not handle {scope} configs yet')


if __name__ == '__main__':
    main()
