# The TransXNet backbone of every detection and segmentation base, as in the
# paper: all four outputs (strides 4-32, each through its GroupNorm), SyncBN,
# the authors' released ImageNet checkpoint, drop path 0.1 for T (0.2 for S,
# 0.3 for B: the leaf configs set arch, drop_path_rate and checkpoint).
# Referenced as backbone={{_base_.dense_backbone}}; `_delete_` drops the keys
# of the ResNet that mmdet's / mmseg's base puts there.
dense_backbone = dict(
    _delete_=True,
    type='TransXNet',
    arch='t',
    out_indices=(0, 1, 2, 3),
    drop_path_rate=0.1,
    norm_cfg=dict(type='SyncBN', requires_grad=True),
    init_cfg=dict(
        type='Pretrained', checkpoint='checkpoints/transx-t.pth.tar'))
