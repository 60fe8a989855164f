# Mask R-CNN 1x, TransXNet-T backbone (paper Table V). Settings: _base_/mask_rcnn_transxnet.py.
_base_ = './_base_/mask_rcnn_transxnet.py'

model = dict(
    backbone=dict(
        arch='t',
        drop_path_rate=0.1,
        init_cfg=dict(checkpoint='checkpoints/transx-t.pth.tar')),
    neck=dict(in_channels=[48, 96, 224, 448]))
