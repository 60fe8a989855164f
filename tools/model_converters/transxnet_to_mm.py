"""Convert an authors' TransXNet ImageNet checkpoint to our key names.

    python tools/model_converters/transxnet_to_mm.py transx-t.pth.tar transxnet-t_in1k.pth

The output is an mmpretrain ImageClassifier checkpoint (``backbone.*`` and
``head.fc.*``) that loads completely with
``configs/transxnet-*_in1k.py``. For
detection and segmentation use it as the backbone's
``init_cfg=dict(type='Pretrained', checkpoint=OUT, prefix='backbone.')``, or
point ``init_cfg`` at the authors' file directly: both load every backbone
weight. ``--backbone-only`` leaves out the classifier (its GroupNorm would
otherwise become ``backbone.norm3``).
"""
import argparse

import transxnet_mm  # noqa: F401  (registers TransXNet)
from transxnet_mm.models.utils.ckpt_convert import official_to_mm_checkpoint


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help="the authors' checkpoint (.pth.tar)")
    parser.add_argument('dst', help='where to write the converted checkpoint')
    parser.add_argument('--backbone-only', action='store_true',
                        help='leave out the ImageNet classifier')
    return parser.parse_args()


def main():
    args = parse_args()
    try:
        summary = official_to_mm_checkpoint(
            args.src, args.dst, with_head=not args.backbone_only)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(str(e)) from None
    if summary is None:
        raise SystemExit(
            f"{args.src} does not hold the authors' TransXNet keys "
            f'(patch_embed.*, network.*) or is not a plain weights file; '
            f'nothing to convert.')
    print(f'{args.src} -> {args.dst}: {summary}.')


if __name__ == '__main__':
    main()
