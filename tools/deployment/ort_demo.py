"""Run an exported ONNX file with onnxruntime on an image or a folder and
draw the results as tools/image_demo.py does.

    python tools/deployment/ort_demo.py FILE.onnx CONFIG IMG_OR_DIR
        [--out-dir DIR] [--score-thr 0.3] [--threads 2]

CONFIG is the config the file was exported from: its test pipeline and
data preprocessor make the input, its heads' own post-processing (box
decoding and NMS, RoI heads, resizing, softmax) runs in PyTorch on the
onnxruntime outputs, and its visualizer draws them (detections and masks,
or class masks, one image per input in --out-dir); classifiers print the
top-5 classes. A Mask R-CNN file needs the ``.torch_part.pth`` file that
export_onnx.py wrote beside it (the RoI heads' weights).
"""
import argparse
import os
import os.path as osp
import sys

import numpy as np

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from image_demo import draw, list_images  # noqa: E402  (tools/image_demo.py)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('onnx', help='the exported .onnx file')
    parser.add_argument('config', help='the config it was exported from')
    parser.add_argument('img', help='an image file or a folder of images')
    parser.add_argument('--out-dir', default='outputs/ort_demo',
                        help='where the drawn images are written')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='detections below this score are not drawn')
    parser.add_argument('--threads', type=int, default=2,
                        help='onnxruntime intra-op threads')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    from transxnet_mm import deploy
    from transxnet_mm.apis import build_visualizer

    images = list_images(args.img)
    try:
        _, model, task = deploy.load_model(args.config)
        if task.torch_state() is not None:
            deploy.load_torch_state(model, args.onnx)
        session = deploy.OnnxModel(args.onnx, args.threads)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f'ort_demo: {e}')
    if session.output_names != task.output_names():
        raise SystemExit(
            f'ort_demo: {args.onnx} has the outputs '
            f'{session.output_names}, but {args.config} expects '
            f'{task.output_names()}: pass the config it was exported from')
    os.makedirs(args.out_dir, exist_ok=True)
    visualizer = None
    if task.scope != 'mmpretrain':
        visualizer = build_visualizer(model)
    for path in images:
        result = deploy.predict_onnx(session, task, [path])[0]
        if task.scope == 'mmdet':
            out_file = draw(visualizer, path, result, args.out_dir,
                            pred_score_thr=args.score_thr)
            n = int((result.pred_instances.scores >= args.score_thr).sum())
            print(f'{path}: {n} detections >= {args.score_thr} -> '
                  f'{out_file}')
        elif task.scope == 'mmseg':
            out_file = draw(visualizer, path, result, args.out_dir)
            classes = model.dataset_meta['classes']
            labels = result.pred_sem_seg.data.numpy().ravel()
            counts = np.bincount(labels, minlength=len(classes))
            top = [f'{classes[i].strip()} {counts[i] / labels.size:.0%}'
                   for i in counts.argsort()[::-1][:3] if counts[i]]
            print(f'{path}: {", ".join(top)} -> {out_file}')
        else:
            scores = result.pred_score.numpy()
            classes = model.dataset_meta['classes']
            print(f'{path}: top-5 of {len(scores)} classes')
            for rank, i in enumerate(scores.argsort()[::-1][:5], 1):
                print(f'  {rank}. {scores[i]:.4f}  {classes[i]} ({i})')


if __name__ == '__main__':
    main()
