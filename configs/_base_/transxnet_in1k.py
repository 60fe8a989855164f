# ImageNet-1K classification with a TransXNet backbone: the authors' timm
# recipe (their train.py and scripts/train_*.sh, timm 0.6.12) in mmpretrain
# 1.2.0 terms. The leaf configs (transxnet-{t,s,b}_in1k.py) set the variant.
#
# Model: the authors' classifier is GroupNorm(1) -> global average pool ->
# 1x1 conv. Here the GroupNorm is the backbone's output norm of the last stage
# (out_indices=(3,) -> norm3), the pool is GlobalAveragePooling and the 1x1
# conv a LinearClsHead, so the released checkpoints load completely
# (classifier.0 -> backbone.norm3, classifier.2 -> head.fc; see
# transxnet_mm/models/utils/ckpt_convert.py) and give the authors' logits.
#
# Test: timm's eval transform with the authors' crop_pct (0.9 for T and S,
# 0.95 for B): PIL decode, bicubic resize of the short edge to
# floor(224 / crop_pct) with PIL, center crop 224, ImageNet mean and std.
#
# Train (8 GPUs x 128 = 1024 images per step; `--amp` for the authors'
# mixed precision): AdamW lr 2e-3, weight decay 0.05, betas (0.9, 0.999),
# eps 1e-8; RandomResizedCrop 224, flip 0.5, RandAugment rand-m9-mstd0.5-inc1,
# random erasing 0.25 (per-pixel random colours), mixup 0.8 / cutmix 1.0
# (one of the two per batch), label smoothing 0.1, drop path 0.1 / 0.2 / 0.4,
# model EMA, SyncBN, no gradient clipping. What mmpretrain cannot express
# exactly: timm picked bilinear or bicubic at random for the crop and
# RandAugment ('random' train interpolation), here bicubic; timm erased after
# normalisation and after mixup, mmpretrain before both.
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['transxnet_mm'], allow_failed_imports=False)

# The ImageNet root: the environment variable IMAGENET_ROOT, else
# data/imagenet. Either the authors' layout (train/ and val/ with one folder
# per class) or mmpretrain's (plus meta/train.txt and meta/val.txt).
data_root = '{{$IMAGENET_ROOT:data/imagenet}}'

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='TransXNet',
        arch='t',
        out_indices=(3, ),  # the last stage through its GroupNorm(1)
        drop_path_rate=0.1,
        norm_cfg=dict(type='SyncBN', requires_grad=True)),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=448,
        # timm's SoftTargetCrossEntropy on label-smoothed mixup targets
        # equals this loss on mixed one-hot targets (smoothing is linear).
        loss=dict(
            type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        # The authors' classifier conv: truncated normal std 0.02, bias 0.
        init_cfg=dict(type='TruncNormal', layer='Linear', std=.02, bias=0.)),
    train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0),
    ]),
)

bgr_mean = [103.53, 116.28, 123.675]
bgr_std = [57.375, 57.12, 58.395]
train_pipeline = [
    # timm reads images with PIL and ignores their EXIF orientation.
    dict(
        type='LoadImageFromFile',
        imdecode_backend='pillow',
        color_type='color_ignore_orientation'),
    dict(
        type='RandomResizedCrop',
        scale=224,
        crop_ratio_range=(0.08, 1.0),
        aspect_ratio_range=(3. / 4., 4. / 3.),
        backend='pillow',
        interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    # timm 'rand-m9-mstd0.5-inc1': 2 ops, magnitude 9 of 10 with std 0.5,
    # the 'increasing' op set, fill colour the ImageNet mean.
    dict(
        type='RandAugment',
        policies='timm_increasing',
        num_policies=2,
        total_level=10,
        magnitude_level=9,
        magnitude_std=0.5,
        hparams=dict(
            pad_val=[round(x) for x in bgr_mean], interpolation='bicubic')),
    # timm --reprob 0.25 --remode pixel: one box of 2-33 % of the image,
    # aspect 0.3-3.3, filled with per-pixel normal noise (in normalised units).
    dict(
        type='RandomErasing',
        erase_prob=0.25,
        mode='rand',
        min_area_ratio=0.02,
        max_area_ratio=1 / 3,
        fill_color=bgr_mean,
        fill_std=bgr_std),
    dict(type='PackInputs'),
]
# crop_pct 0.9 (T, S): floor(224 / 0.9) = 248. B overrides it (0.95 -> 235).
test_pipeline = [
    dict(
        type='LoadImageFromFile',
        imdecode_backend='pillow',
        color_type='color_ignore_orientation'),
    dict(
        type='ResizeEdge',
        scale=248,
        edge='short',
        backend='pillow',
        interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]

# drop_last as timm's training loader: every batch is full (IDConv's
# BatchNorm cannot train on a batch of one image, which an odd-sized dataset
# would otherwise leave at an epoch's end in one process).
train_dataloader = dict(
    batch_size=128,
    drop_last=True,
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=128,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader

# Weight decay as timm's create_optimizer_v2(filter_bias_and_bn=True) with
# the authors' model (which has no no_weight_decay()): every parameter with
# ndim <= 1 or a name ending in '.bias' gets no decay, everything else 0.05.
# For TransXNet that is exactly norm_decay_mult=0 (GroupNorm and BatchNorm
# weights and biases) plus bias_decay_mult=0 (conv, head and layer-scale
# biases, and IDConv's bias bank, a (G, C) tensor named 'bias'). NOT
# flat_decay_mult=0: the layer scale is a (C, 1, 1, 1) conv weight (the
# authors' shape, kept), so it IS decayed. NOT the
# Swin base's no-decay rule for position biases: the relative position
# biases (1, heads, N, M) are decayed as well.
optim_wrapper = dict(
    optimizer=dict(
        type='AdamW', lr=2e-3, weight_decay=0.05, eps=1e-8,
        betas=(0.9, 0.999)),
    paramwise_cfg=dict(
        _delete_=True, norm_decay_mult=0., bias_decay_mult=0.),
    clip_grad=None,
)

# timm's cosine schedule, stepped once per epoch as timm does: warm-up
# lr = 1e-6 + e * (2e-3 - 1e-6) / 5 in epochs e = 0..4 (LinearLR reaches its
# end factor at its last step, epoch 5), then cosine to the minimum lr 1e-5 at
# epoch 300. The paper says 300 epochs; the authors' train.py (timm 0.6.12
# create_scheduler) adds its default --cooldown-epochs 10, which their scripts
# keep: 310 epochs in all, the last 10 at the minimum lr. timm's cosine phase
# counts from epoch 0 (warm-up included), mmengine's from its begin: the two
# differ by at most 1.5 % of the peak lr (the warm-up values are identical).
max_epochs = 310
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-6 / 2e-3,
        by_epoch=True,
        begin=0,
        end=6),
    dict(
        type='CosineAnnealingLR',
        eta_min=1e-5,
        by_epoch=True,
        begin=5,
        end=300),
]
train_cfg = dict(max_epochs=max_epochs)

# timm ModelEmaV2 (decay 0.9998 for T, 0.99985 for S and B), updated every
# iteration, buffers (BatchNorm statistics) included; evaluated and saved
# instead of the raw weights. mmengine's momentum is 1 - decay.
custom_hooks = [
    dict(
        type='EMAHook',
        momentum=2e-4,
        update_buffers=True,
        priority='ABOVE_NORMAL')
]

default_hooks = dict(
    checkpoint=dict(interval=1, max_keep_ckpts=3, save_best='auto'))

# 8 GPUs x 128 images: the lr above is for a total batch of 1024;
# `tools/train.py --auto-scale-lr` scales it linearly to the actual batch.
auto_scale_lr = dict(base_batch_size=1024)
