# RetinaNet 1x, TransXNet-B backbone (paper Table IV). Settings: _base_/retinanet_transxnet.py.
_base_ = './_base_/retinanet_transxnet.py'

model = dict(
    backbone=dict(
        arch='b',
        drop_path_rate=0.3,
        init_cfg=dict(checkpoint='checkpoints/transx-b.pth.tar')),
    neck=dict(in_channels=[152, 336, 672]))
