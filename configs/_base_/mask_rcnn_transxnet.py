# Mask R-CNN 1x on COCO with a TransXNet backbone, as in the paper (Table V):
# all four backbone outputs into the FPN; AdamW lr 1e-4, weight decay 0.05 with
# no decay on parameters whose name contains 'norm' in the authors' model;
# 12 epochs, lr x0.1 at epochs 8 and 11 after a 500-iteration linear warm-up
# from 0.001; resize (1333, 800), flip 0.5, pad 32; total batch 16 (8 x 2).
_base_ = [
    'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py',
    './transxnet_dense.py', './det_transxnet_common.py'
]
custom_imports = dict(imports=['transxnet_mm'], allow_failed_imports=False)

# The COCO root (mmdet's layout): the environment variable COCO_ROOT, else data/coco/.
data_root = '{{$COCO_ROOT:data/coco/}}'

model = dict(
    backbone={{_base_.dense_backbone}},
    neck=dict(in_channels=[48, 96, 224, 448]))

# The authors' rule custom_keys={'norm': decay_mult 0}: it matches the block
# GroupNorms (norm1, norm2), the output GroupNorms (norm0..norm3) and the
# BatchNorm inside every MS-FFN ('mlp.norm'), which carry the same names here.
optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-4, weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.)}))

train_dataloader = dict(
    batch_sampler={{_base_.full_batch_sampler}},
    dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

default_hooks = dict(checkpoint={{_base_.best_checkpoint}})
