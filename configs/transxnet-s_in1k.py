# TransXNet-S on ImageNet-1K (paper: 83.8 top-1, 26.9 M params, 4.5 GFLOPs).
# Settings: _base_/transxnet_in1k.py; test: resize 248, crop 224.
_base_ = './_base_/transxnet_in1k.py'

model = dict(
    backbone=dict(arch='s', drop_path_rate=0.2),
    head=dict(in_channels=512))

# timm model EMA decay 0.99985.
custom_hooks = [
    dict(
        type='EMAHook',
        momentum=1 - 0.99985,
        update_buffers=True,
        priority='ABOVE_NORMAL')
]
