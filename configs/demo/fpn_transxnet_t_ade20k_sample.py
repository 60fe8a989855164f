# Semantic FPN-TransXNet-T on the 10-image real ADE20K-layout sample
# (tools/dataset_converters/coco_to_ade20k_sample.py: COCO val2017 images with
# their human annotations mapped onto ADE20K's classes), sized for 2 CPU
# cores: the real config with the crop and scales halved twice and a short
# schedule. No ImageNet weights can be downloaded here, so the backbone trains
# from scratch; the point is that every moving part runs for real.
_base_ = '../fpn_transxnet_t_ade20k.py'

data_root = 'data/ade20k_sample'
crop_size = (256, 256)
img_scale = (1024, 256)
max_iters = 120

# One CPU process: plain BN instead of SyncBN (backbone and head).
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        init_cfg=None,  # from scratch: no ImageNet weights offline
        drop_path_rate=0.,
        norm_cfg=norm_cfg),
    decode_head=dict(norm_cfg=norm_cfg))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=img_scale, ratio_range=(0.5, 2.0),
         keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='AlignResize', scale=img_scale, keep_ratio=True,
         size_divisor=32),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs')
]
train_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader

# The paper's schedule shape, shortened: linear warm-up, then cosine.
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=11),
    dict(type='CosineAnnealingLR', eta_min_ratio=1e-8, by_epoch=False,
         begin=0, end=max_iters, T_max=max_iters)
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=max_iters))
log_processor = dict(window_size=10)
randomness = dict(seed=0)
