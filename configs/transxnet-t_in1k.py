# TransXNet-T on ImageNet-1K (paper: 81.6 top-1, 12.8 M params, 1.8 GFLOPs).
# Settings: _base_/transxnet_in1k.py (its EMA decay 0.9998 is T's); test:
# resize 248, crop 224.
_base_ = './_base_/transxnet_in1k.py'

model = dict(
    backbone=dict(arch='t', drop_path_rate=0.1),
    head=dict(in_channels=448))
