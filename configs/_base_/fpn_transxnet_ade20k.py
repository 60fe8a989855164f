# Semantic FPN on ADE20K (150 classes) with a TransXNet backbone, as in the
# paper (section 4.3, the authors' semantic_segmentation/ configs):
# FPN out 256 with 4 outputs, FPN head 128 channels, dropout 0.1, SyncBN;
# AdamW lr 2e-4, weight decay 1e-4; 80k iterations: 1000-iteration linear
# warm-up from 0.1, cosine annealing to 1e-8 of the base lr; total batch 32
# (8 GPUs x 4 images); train: resize to (2048, 512) with ratio 0.5-2.0, random
# crop 512x512 (cat_max_ratio 0.75), flip 0.5, photometric distortion, pad to
# 512; test: single scale (2048, 512) keeping the ratio, then both sides
# resized to multiples of 32 (AlignResize). The leaf configs
# (fpn_transxnet_{t,s,b}_ade20k.py) set the variant.
#
# Fewer GPUs: the batch is 4 images per GPU, so with N GPUs the total batch is
# 4N. Either pass --auto-scale-lr (lr x 4N/32, from base_batch_size below) or
# keep 32 images, e.g. train_dataloader.batch_size=8 on 4 GPUs. The schedule
# stays 80k iterations either way.
_base_ = [
    'mmseg::_base_/models/fpn_r50.py', 'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_80k.py', './transxnet_dense.py'
]
custom_imports = dict(imports=['transxnet_mm'], allow_failed_imports=False)

# The ADE20K root (mmseg's layout, ADEChallengeData2016/): the environment
# variable ADE20K_ROOT, else data/ade/ADEChallengeData2016.
data_root = '{{$ADE20K_ROOT:data/ade/ADEChallengeData2016}}'
crop_size = (512, 512)

# The authors' effective initialisation of the neck and head. Their training
# script (mmseg 0.30) never called init_weights(), so every ConvModule kept
# mmcv 1.x's construction-time init (Kaiming normal, fan_out, 'relu' gain,
# bias 0; std sqrt(2 / (256 * 9)) = 0.0295 for the FPN's 3x3 convs) and
# conv_seg PyTorch's default (weight and bias uniform in +-1/sqrt(fan_in)).
# MMEngine's runner calls init_weights(), which would apply mmseg's Xavier
# (FPN) and N(0, 0.01) (conv_seg) instead; these init_cfgs restore theirs.
# `PyTorchDefault` is registered by transxnet_mm (transxnet_mm/models/utils/init.py).
authors_conv_init = dict(
    type='Kaiming', layer='Conv2d', mode='fan_out', nonlinearity='relu',
    distribution='normal', bias=0)

model = dict(
    # mmseg's base sets an ImageNet ResNet here, and EncoderDecoder would hand
    # it to the backbone; TransXNet loads its weights through init_cfg.
    pretrained=None,
    # Pads every training crop to 512x512 (the paper's "pad to 512").
    data_preprocessor=dict(size=crop_size),
    backbone={{_base_.dense_backbone}},
    # FPN: out_channels=256, num_outs=4 from mmseg's base.
    neck=dict(
        in_channels=[48, 96, 224, 448],
        out_channels=256,
        num_outs=4,
        init_cfg=authors_conv_init),
    # FPN head: 128 channels, dropout 0.1, SyncBN from mmseg's base.
    decode_head=dict(
        num_classes=150,
        init_cfg=dict(
            authors_conv_init,
            override=dict(type='PyTorchDefault', name='conv_seg'))))

# Train pipeline: mmseg's ADE20K one is the paper's (RandomResize (2048, 512)
# ratio 0.5-2.0, RandomCrop 512 cat_max_ratio 0.75, flip 0.5,
# PhotoMetricDistortion). Test: the authors' AlignResize instead of Resize.
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='AlignResize', scale=(2048, 512), keep_ratio=True,
         size_divisor=32),
    # Loaded after the resize: the metric compares at the original size.
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs')
]
train_dataloader = dict(batch_size=4, dataset=dict(data_root=data_root))
val_dataloader = dict(
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator

# The authors' optimizer: AdamW, no per-parameter rules, no grad clipping.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, weight_decay=1e-4),
    clip_grad=None)
# mmcv 1.x CosineAnnealing with a linear warm-up, as the authors ran it: the
# warm-up factor (0.1 -> 1 over 1000 iterations) multiplies a cosine that runs
# over all 80k iterations down to 1e-8 of the base lr. mmengine chains the two
# schedulers multiplicatively over the same iterations, which is that product.
# mmengine's LinearLR reaches its end factor at iteration end - 1, mmcv's
# warm-up at warmup_iters: end=1001 gives mmcv's 0.1 + 0.9 * it / 1000.
max_iters = 80000
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
         end=1001),
    dict(type='CosineAnnealingLR', eta_min_ratio=1e-8, by_epoch=False,
         begin=0, end=max_iters, T_max=max_iters)
]
# The authors evaluate every 4000 iterations and keep the best mIoU
# checkpoint (evaluation=dict(interval=4000, save_best='mIoU')) besides the
# latest one (checkpoint_config interval 4000, max_keep_ckpts=1).
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters,
                 val_interval=4000)
default_hooks = dict(
    checkpoint=dict(by_epoch=False, interval=4000, max_keep_ckpts=1,
                    save_best='mIoU'))
# The paper's total batch: 8 GPUs x 4 images (see --auto-scale-lr above).
auto_scale_lr = dict(enable=False, base_batch_size=32)
