# Mask R-CNN 1x, TransXNet-B backbone (paper Table V). Settings: _base_/mask_rcnn_transxnet.py.
_base_ = './_base_/mask_rcnn_transxnet.py'

model = dict(
    backbone=dict(
        arch='b',
        drop_path_rate=0.3,
        init_cfg=dict(checkpoint='checkpoints/transx-b.pth.tar')),
    neck=dict(in_channels=[76, 152, 336, 672]))
