# TransXNet-B on ImageNet-1K (paper: 84.6 top-1, 48.0 M params, 8.3 GFLOPs).
# Settings: _base_/transxnet_in1k.py; test: resize 235, crop 224.
_base_ = './_base_/transxnet_in1k.py'

model = dict(
    backbone=dict(arch='b', drop_path_rate=0.4),
    head=dict(in_channels=672))

# timm model EMA decay 0.99985.
custom_hooks = [
    dict(
        type='EMAHook',
        momentum=1 - 0.99985,
        update_buffers=True,
        priority='ABOVE_NORMAL')
]

# The authors' crop_pct 0.95: short edge to floor(224 / 0.95) = 235.
test_pipeline = [
    dict(
        type='LoadImageFromFile',
        imdecode_backend='pillow',
        color_type='color_ignore_orientation'),
    dict(
        type='ResizeEdge',
        scale=235,
        edge='short',
        backend='pillow',
        interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
