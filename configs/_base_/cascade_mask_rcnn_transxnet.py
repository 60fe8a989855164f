# Cascade Mask R-CNN 3x with multi-scale training on COCO with a TransXNet
# backbone: the standard comparison protocol of mmdet's Swin and ConvNeXt
# configs, NOT in the paper (it has no numbers for it). mmdet's
# cascade-mask-rcnn_r50_fpn_ms-3x_coco base: train at a random short side of
# 640-800 (long side <= 1333), flip 0.5, 12 epochs of a 3x-repeated COCO
# (= 36 epochs), lr x0.1 after (repeated) epochs 9 and 11, 500-iteration
# warm-up; total batch 16 (8 GPUs x 2). Optimizer as mmdet's Swin 3x configs:
# AdamW lr 1e-4, betas (0.9, 0.999), weight decay 0.05, none on the norms and
# the relative position biases. Backbone as in the paper's detectors (all four
# outputs, drop path 0.1 / 0.2 / 0.3, SyncBN, the authors' ImageNet weights).
# The leaf configs (cascade_mask_rcnn_transxnet_{t,s,b}_ms-3x.py) set the
# variant.
_base_ = [
    'mmdet::cascade_rcnn/cascade-mask-rcnn_r50_fpn_ms-3x_coco.py',
    './transxnet_dense.py', './det_transxnet_common.py'
]
custom_imports = dict(imports=['transxnet_mm'], allow_failed_imports=False)

# The COCO root (mmdet's layout): the environment variable COCO_ROOT, else data/coco/.
data_root = '{{$COCO_ROOT:data/coco/}}'

model = dict(
    backbone={{_base_.dense_backbone}},
    neck=dict(in_channels=[48, 96, 224, 448]))

optim_wrapper = dict(
    optimizer=dict(
        _delete_=True,
        type='AdamW',
        lr=1e-4,
        betas=(0.9, 0.999),
        weight_decay=0.05),
    paramwise_cfg=dict(
        norm_decay_mult=0.,
        custom_keys={'relative_pos_bias': dict(decay_mult=0.)}))

train_dataloader = dict(
    batch_sampler={{_base_.full_batch_sampler}},
    dataset=dict(dataset=dict(data_root=data_root)))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
# mmdet's ms-3x instance base evaluates boxes only; masks too here.
val_evaluator = dict(
    ann_file=data_root + 'annotations/instances_val2017.json',
    metric=['bbox', 'segm'])
test_evaluator = val_evaluator

default_hooks = dict(checkpoint={{_base_.best_checkpoint}})
