# UperNet 160k on ADE20K, TransXNet-S backbone (not in the paper).
# Settings: _base_/upernet_transxnet_ade20k.py.
_base_ = '../_base_/upernet_transxnet_ade20k.py'

model = dict(
    backbone=dict(
        arch='s',
        drop_path_rate=0.2,
        init_cfg=dict(checkpoint='checkpoints/transx-s.pth.tar')),
    decode_head=dict(in_channels=[64, 128, 320, 512]),
    auxiliary_head=dict(in_channels=320))
