# RetinaNet 1x on COCO with a TransXNet backbone, as in the paper (Table IV):
# AdamW lr 1e-4, weight decay 1e-4, no per-parameter rules; 12 epochs, lr x0.1
# at epochs 8 and 11 after a 500-iteration linear warm-up from 0.001; resize to
# (1333, 800) keeping the ratio, flip 0.5, pad to 32; total batch 16 (8 GPUs x
# 2 images). The leaf configs (retinanet_transxnet_{t,s,b}.py) set the variant.
_base_ = [
    'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py',
    './det_transxnet_common.py'
]
custom_imports = dict(imports=['transxnet_mm'], allow_failed_imports=False)

# The COCO root (mmdet's layout): the environment variable COCO_ROOT, else data/coco/.
data_root = '{{$COCO_ROOT:data/coco/}}'

model = dict(
    backbone=dict(
        _delete_=True,
        type='TransXNet',
        arch='t',
        # The authors drop the stride-4 output; the FPN starts at stride 8.
        out_indices=(1, 2, 3),
        drop_path_rate=0.1,
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        # The authors' ImageNet checkpoint (transx-t.pth.tar), as released.
        init_cfg=dict(type='Pretrained',
                      checkpoint='checkpoints/transx-t.pth.tar')),
    neck=dict(
        in_channels=[96, 224, 448],
        start_level=0,
        add_extra_convs='on_input',
        num_outs=5))

optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-4, weight_decay=1e-4))

train_dataloader = dict(
    batch_sampler={{_base_.full_batch_sampler}},
    dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

default_hooks = dict(checkpoint={{_base_.best_checkpoint}})
