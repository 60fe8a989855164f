# Semantic FPN, TransXNet-S backbone, ADE20K 80k, as in the paper.
# Settings: _base_/fpn_transxnet_ade20k.py.
_base_ = './_base_/fpn_transxnet_ade20k.py'

model = dict(
    backbone=dict(
        arch='s',
        drop_path_rate=0.2,
        init_cfg=dict(checkpoint='checkpoints/transx-s.pth.tar')),
    neck=dict(in_channels=[64, 128, 320, 512]))
