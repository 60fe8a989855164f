"""Convert an authors' TransXNet ImageNet checkpoint to our key names.

    python tools/model_converters/transxnet_to_mm.py transx-t.pth.tar transxnet-t_in1k.pth

The output is an mmpretrain ImageClassifier checkpoint (``backbone.*`` and
``head.fc.*``) that loads completely with ``configs/transxnet_*_in1k.py``. For
detection and segmentation use it as the backbone's
``init_cfg=dict(type='Pretrained', checkpoint=OUT, prefix='backbone.')``, or
point ``init_cfg`` at the authors' file directly: both load every backbone
weight. ``--backbone-only`` leaves out the classifier (its GroupNorm would
otherwise become ``backbone.norm3``).
"""
import argparse
import os
import os.path as osp

import torch

from transxnet_mm.models.convert import (convert_official, describe_arch,
                                         extract_state_dict, is_official,
                                         read_checkpoint)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help="the authors' checkpoint (.pth.tar)")
    parser.add_argument('dst', help='where to write the converted checkpoint')
    parser.add_argument('--backbone-only', action='store_true',
                        help='leave out the ImageNet classifier')
    return parser.parse_args()


def main():
    args = parse_args()
    state_dict = extract_state_dict(read_checkpoint(args.src))
    if not is_official(state_dict):
        raise SystemExit(f'{args.src} does not hold the authors\' TransXNet '
                         f'keys (patch_embed.*, network.*); nothing to convert.')
    converted, left_out = convert_official(
        state_dict, with_head=not args.backbone_only)
    if left_out and not args.backbone_only:
        raise SystemExit(f'{args.src} holds keys that are not TransXNet '
                         f'weights: {left_out[:5]}')
    if args.backbone_only:
        converted = {'backbone.' + k: v for k, v in converted.items()}
    arch, desc = describe_arch({
        k[len('backbone.'):]: v
        for k, v in converted.items() if k.startswith('backbone.')
    })
    os.makedirs(osp.dirname(osp.abspath(args.dst)), exist_ok=True)
    torch.save(
        dict(state_dict=converted,
             meta=dict(source=osp.basename(args.src), arch=arch)), args.dst)
    print(f'{args.src} -> {args.dst}: TransXNet-{(arch or "custom").upper()} '
          f'({desc}), {len(converted)} tensors'
          f'{", backbone only" if args.backbone_only else ""}.')


if __name__ == '__main__':
    main()
