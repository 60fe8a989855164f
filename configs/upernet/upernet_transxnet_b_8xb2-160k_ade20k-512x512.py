# UperNet 160k on ADE20K, TransXNet-B backbone (not in the paper).
# Settings: _base_/upernet_transxnet_ade20k.py.
_base_ = '../_base_/upernet_transxnet_ade20k.py'

model = dict(
    backbone=dict(
        arch='b',
        drop_path_rate=0.3,
        init_cfg=dict(checkpoint='checkpoints/transx-b.pth.tar')),
    decode_head=dict(in_channels=[76, 152, 336, 672]),
    auxiliary_head=dict(in_channels=336))
