# RetinaNet 1x, TransXNet-T backbone (paper Table IV). Settings: _base_/retinanet_transxnet.py.
_base_ = './_base_/retinanet_transxnet.py'

model = dict(
    backbone=dict(
        arch='t',
        drop_path_rate=0.1,
        init_cfg=dict(checkpoint='checkpoints/transx-t.pth.tar')),
    neck=dict(in_channels=[96, 224, 448]))
