"""Fetch the real COCO val2017 sample (10 images, official annotations) once.

    python tools/dataset_converters/fetch_coco_sample.py [--out data/coco_sample]

The PyPI wheel clarifai==9.6.0 ships 10 COCO val2017 images with their
official instance annotations; only those files are unpacked (the package is
not installed). Layout written (mmdet's COCO layout):

    data/coco_sample/val2017/*.jpg
    data/coco_sample/annotations/instances_val2017_sample.json

Images keep their Flickr licences (recorded in the json); COCO annotations are
CC BY 4.0.
"""
import argparse
import glob
import json
import os
import os.path as osp
import subprocess
import sys
import zipfile

WHEEL = 'clarifai==9.6.0'
PREFIX = 'clarifai/data_upload/examples/image_segmentation/coco/'
ANN_NAME = 'instances_val2017_sample.json'


def fetch(out: str, cache: str) -> str:
    ann_file = osp.join(out, 'annotations', ANN_NAME)
    if osp.isfile(ann_file):
        return ann_file
    os.makedirs(cache, exist_ok=True)
    wheels = glob.glob(osp.join(cache, 'clarifai-9.6.0-*.whl'))
    if not wheels:
        print(f'Downloading {WHEEL} (only to unpack its COCO sample) ...')
        subprocess.run([sys.executable, '-m', 'pip', 'download', '--quiet',
                        '--no-deps', '-d', cache, WHEEL], check=True)
        wheels = glob.glob(osp.join(cache, 'clarifai-9.6.0-*.whl'))
    os.makedirs(osp.join(out, 'val2017'), exist_ok=True)
    os.makedirs(osp.join(out, 'annotations'), exist_ok=True)
    with zipfile.ZipFile(wheels[0]) as zf:
        for name in zf.namelist():
            if name.startswith(PREFIX + 'images/') and name.endswith('.jpg'):
                with open(osp.join(out, 'val2017', osp.basename(name)),
                          'wb') as f:
                    f.write(zf.read(name))
        ann = json.loads(
            zf.read(PREFIX + 'annotations/instances_val2017_subset.json'))
    with open(ann_file, 'w') as f:
        json.dump(ann, f)
    return ann_file


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', default='data/coco_sample')
    parser.add_argument(
        '--cache',
        default=osp.join(osp.expanduser('~'), '.cache', 'transxnet_mm',
                         'downloads'),
        help='where the downloaded wheel is kept')
    args = parser.parse_args()
    ann_file = fetch(args.out, args.cache)
    with open(ann_file) as f:
        ann = json.load(f)
    print(f'COCO sample: {len(ann["images"])} images, '
          f'{len(ann["annotations"])} annotations, '
          f'{len(ann["categories"])} categories in {args.out}')


if __name__ == '__main__':
    main()
