# A fit check of Semantic FPN-TransXNet-T (tools/run_seg_demo.sh): train on 8
# of the 10 images of the rasterised real sample (data/ade20k_sample,
# tools/dataset_converters/coco_to_ade20k_sample.py) until the model fits
# them, then mIoU on those 8 (the fit check) and on the 2 held out (low: 8
# images cannot teach a backbone that starts from scratch to generalise).
# The sample config's run with no augmentation: a fit check asks whether the
# model can fit these images, not whether it generalises.
_base_ = './fpn_transxnet_t_ade20k_sample.py'

img_scale = (256, 256)  # the long side to 256 (0.4 of COCO's 640x480)
max_iters = 120         # 30 passes over the 8 images in batches of 2
warmup_iters = 20
# Split by index: the dataset lists the images by file name; the first 8
# train, the last 2 (000000424349, 000000573008) are held out. (The COCO
# detection fit check holds out 86956 and 424349: its json's order.)
train_indices, held_out_indices = 8, [8, 9]

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='PackSegInputs')
]
# Labels loaded after the resize: the metric compares at the original size.
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs')
]
train_dataloader = dict(
    dataset=dict(indices=train_indices, pipeline=train_pipeline))
# Validation is the fit check: the 8 training images (the converter writes
# the same 10 images and labels into both splits); test, the 2 held out.
val_dataloader = dict(
    dataset=dict(indices=train_indices, pipeline=test_pipeline))
test_dataloader = dict(
    dataset=dict(indices=held_out_indices, pipeline=test_pipeline))

# 5x the paper's lr (it fine-tunes ImageNet weights; this starts from
# scratch), a short warm-up, then a cosine to 0.
optim_wrapper = dict(optimizer=dict(lr=1e-3))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
         end=warmup_iters),
    dict(type='CosineAnnealingLR', eta_min=0., by_epoch=False, begin=0,
         end=max_iters, T_max=max_iters)
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters // 3)
default_hooks = dict(checkpoint=dict(interval=max_iters))
