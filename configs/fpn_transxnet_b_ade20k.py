# Semantic FPN, TransXNet-B backbone, ADE20K 80k, as in the paper.
# Settings: _base_/fpn_transxnet_ade20k.py.
_base_ = './_base_/fpn_transxnet_ade20k.py'

model = dict(
    backbone=dict(
        arch='b',
        drop_path_rate=0.3,
        init_cfg=dict(checkpoint='checkpoints/transx-b.pth.tar')),
    neck=dict(in_channels=[76, 152, 336, 672]))
