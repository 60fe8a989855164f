# RetinaNet 1x, TransXNet-S backbone (paper Table IV). Settings: _base_/retinanet_transxnet.py.
_base_ = './_base_/retinanet_transxnet.py'

model = dict(
    backbone=dict(
        arch='s',
        drop_path_rate=0.2,
        init_cfg=dict(checkpoint='checkpoints/transx-s.pth.tar')),
    neck=dict(in_channels=[128, 320, 512]))
