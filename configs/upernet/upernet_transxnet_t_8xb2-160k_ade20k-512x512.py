# UperNet 160k on ADE20K, TransXNet-T backbone (not in the paper).
# Settings: _base_/upernet_transxnet_ade20k.py.
_base_ = '../_base_/upernet_transxnet_ade20k.py'

model = dict(
    backbone=dict(
        arch='t',
        drop_path_rate=0.1,
        init_cfg=dict(checkpoint='checkpoints/transx-t.pth.tar')),
    decode_head=dict(in_channels=[48, 96, 224, 448]),
    auxiliary_head=dict(in_channels=224))
