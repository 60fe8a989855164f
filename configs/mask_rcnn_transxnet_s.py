# Mask R-CNN 1x, TransXNet-S backbone (paper Table V). Settings: _base_/mask_rcnn_transxnet.py.
_base_ = './_base_/mask_rcnn_transxnet.py'

model = dict(
    backbone=dict(
        arch='s',
        drop_path_rate=0.2,
        init_cfg=dict(checkpoint='checkpoints/transx-s.pth.tar')),
    neck=dict(in_channels=[64, 128, 320, 512]))
