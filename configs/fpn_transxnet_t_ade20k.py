# Semantic FPN, TransXNet-T backbone, ADE20K 80k, as in the paper.
# Settings: _base_/fpn_transxnet_ade20k.py.
_base_ = './_base_/fpn_transxnet_ade20k.py'

model = dict(
    backbone=dict(
        arch='t',
        drop_path_rate=0.1,
        init_cfg=dict(checkpoint='checkpoints/transx-t.pth.tar')),
    neck=dict(in_channels=[48, 96, 224, 448]))
