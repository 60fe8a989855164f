"""Rasterise the real COCO sample into an ADE20K-layout segmentation sample.

    python tools/dataset_converters/coco_to_ade20k_sample.py
        [--coco data/coco_sample] [--out data/ade20k_sample]

No ADE20K images can be downloaded here. The 10 COCO val2017 images of
``fetch_coco_sample.py`` (run first when ``--coco`` is missing) carry human
polygon / RLE annotations; this tool rasterises them with pycocotools into
ADE20K's layout, as mmseg's ``ADE20KDataset`` reads it:

    data/ade20k_sample/images/{training,validation}/*.jpg
    data/ade20k_sample/annotations/{training,validation}/*.png  (uint8, 1 channel)

Labels: a COCO class that names one of ADE20K's 150 classes (``CLASS_MAP``)
is written as that ADE index + 1; every other pixel (unmapped classes, COCO's
unlabelled background and crowd regions) is 0, which ``reduce_zero_label``
turns into the ignore index 255. Crowd regions (``iscrowd=1``) are written as
0 because a crowd RLE covers a group with coarse boundaries, not one object;
single-object annotations of a mapped class are drawn over them. Instances
are drawn largest first, so a smaller object in front of a larger one keeps
its pixels. All 10 images serve as both the training and the validation split:
the sample shows the pipeline running on real labels, it measures nothing.
"""
import argparse
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
from typing import Dict, List

import numpy as np

# COCO class name -> ADE20K class name (mmseg's ADE20KDataset names). Exact
# names, plus the cases where the ADE20K class is the COCO object's obvious
# category (its full ADE20K name lists it, or WordNet puts it directly under
# it). COCO classes without such a match (train, fire hydrant, cup, bowl,
# keyboard, cell phone, ...) are left at 0 (ignored).
CLASS_MAP: Dict[str, str] = {
    # same name
    'person': 'person', 'bicycle': 'bicycle', 'car': 'car', 'bus': 'bus',
    'truck': 'truck', 'airplane': 'airplane', 'boat': 'boat',
    'traffic light': 'traffic light', 'bench': 'bench', 'chair': 'chair',
    'bed': 'bed', 'toilet': 'toilet', 'bottle': 'bottle',
    'microwave': 'microwave', 'oven': 'oven', 'sink': 'sink',
    'refrigerator': 'refrigerator', 'book': 'book', 'clock': 'clock',
    'vase': 'vase',
    # ADE20K's full name lists the COCO one
    'motorcycle': 'minibike',            # "minibike, motorbike"
    'couch': 'sofa',                     # "sofa, couch, lounge"
    'dining table': 'table',             # "table"
    'potted plant': 'plant',             # "plant, flora, plant life"
    'tv': 'television receiver',         # "television receiver, ..., tv"
    'laptop': 'computer',                # "computer, computing machine, ..."
    'sports ball': 'ball',               # "ball"
    'wine glass': 'glass',               # "glass, drinking glass"
    'stop sign': 'signboard',            # "signboard, sign"
    # the ADE20K class is the object's category
    'kite': 'plaything', 'teddy bear': 'plaything',   # "plaything, toy"
    'backpack': 'bag', 'handbag': 'bag', 'suitcase': 'bag',
    **dict.fromkeys(['bird', 'cat', 'dog', 'horse', 'sheep', 'cow',
                     'elephant', 'bear', 'zebra', 'giraffe'], 'animal'),
    **dict.fromkeys(['banana', 'apple', 'sandwich', 'orange', 'broccoli',
                     'carrot', 'hot dog', 'pizza', 'donut', 'cake'], 'food'),
}
SPLITS = ('training', 'validation')
ANN_NAME = 'annotations/instances_val2017_sample.json'


def ade_labels(ade_classes: List[str]) -> Dict[str, int]:
    """COCO name -> label value (ADE index + 1) of every ``CLASS_MAP`` entry;
    stops with an error naming any ADE20K name that does not exist."""
    index = {name.strip(): i for i, name in enumerate(ade_classes)}
    missing = sorted({v for v in CLASS_MAP.values() if v not in index})
    if missing:
        raise ValueError(f'CLASS_MAP names classes that ADE20K does not have: '
                         f'{missing}')
    return {coco: index[ade] + 1 for coco, ade in CLASS_MAP.items()}


def rasterise(anns: List[dict], height: int, width: int,
              cat_names: Dict[int, str], labels: Dict[str, int]) -> np.ndarray:
    """One image's label map: crowds as 0, mapped instances largest first."""
    from pycocotools import mask as mask_utils
    seg = np.zeros((height, width), dtype=np.uint8)
    anns = sorted(anns, key=lambda a: (not a.get('iscrowd', 0), -a['area']))
    for ann in anns:
        label = labels.get(cat_names[ann['category_id']], 0)
        if ann.get('iscrowd', 0):
            label = 0
        elif label == 0:
            continue
        poly = ann['segmentation']
        if isinstance(poly, list):  # polygons
            rle = mask_utils.merge(
                mask_utils.frPyObjects(poly, height, width))
        elif isinstance(poly['counts'], list):  # uncompressed RLE
            rle = mask_utils.frPyObjects(poly, height, width)
        else:
            rle = poly
        seg[mask_utils.decode(rle).astype(bool)] = label
    return seg


def convert(coco_root: str, out: str) -> Dict[str, int]:
    """Writes the ADE20K-layout sample; returns pixel counts per ADE class."""
    import mmcv
    from mmseg.datasets import ADE20KDataset
    ade_classes = list(ADE20KDataset.METAINFO['classes'])
    labels = ade_labels(ade_classes)
    ann_file = osp.join(coco_root, ANN_NAME)
    if not osp.isfile(ann_file):
        fetch = osp.join(osp.dirname(osp.abspath(__file__)),
                         'fetch_coco_sample.py')
        subprocess.run([sys.executable, fetch, '--out', coco_root],
                       check=True)
    with open(ann_file) as f:
        coco = json.load(f)
    cat_names = {c['id']: c['name'] for c in coco['categories']}
    unknown = sorted(set(CLASS_MAP) - set(cat_names.values()))
    if unknown:
        raise ValueError(f'CLASS_MAP names classes that {ann_file} does not '
                         f'declare: {unknown}')
    per_image: Dict[int, List[dict]] = {}
    for ann in coco['annotations']:
        per_image.setdefault(ann['image_id'], []).append(ann)
    counts = np.zeros(len(ade_classes) + 1, dtype=np.int64)
    for split in SPLITS:
        os.makedirs(osp.join(out, 'images', split), exist_ok=True)
        os.makedirs(osp.join(out, 'annotations', split), exist_ok=True)
    for img in coco['images']:
        src = osp.join(coco_root, 'val2017', img['file_name'])
        if not osp.isfile(src):
            raise FileNotFoundError(f'{src} is listed in {ann_file} but '
                                    f'missing; re-run fetch_coco_sample.py')
        seg = rasterise(per_image.get(img['id'], []), img['height'],
                        img['width'], cat_names, labels)
        counts += np.bincount(seg.ravel(), minlength=len(counts))
        stem = osp.splitext(img['file_name'])[0]
        for split in SPLITS:
            shutil.copyfile(src, osp.join(out, 'images', split, stem + '.jpg'))
            mmcv.imwrite(seg, osp.join(out, 'annotations', split,
                                       stem + '.png'))
    return {ade_classes[i - 1].strip(): int(n)
            for i, n in enumerate(counts) if i and n}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--coco', default='data/coco_sample',
                        help='the COCO sample (fetch_coco_sample.py layout)')
    parser.add_argument('--out', default='data/ade20k_sample')
    args = parser.parse_args()
    counts = convert(args.coco, args.out)
    total = sum(counts.values())
    print(f'ADE20K-layout sample in {args.out} (the same images for training '
          f'and validation); labelled pixels per class: ' + ', '.join(
              f'{k} {v}' for k, v in sorted(counts.items(),
                                            key=lambda kv: -kv[1]))
          + f' ({total} in all)')


if __name__ == '__main__':
    main()
