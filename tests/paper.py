"""The paper's settings and numbers, kept here once.

Source: the project's reference, ../shared/reference/transxnet.md (the
paper, arXiv 2310.19380, and the authors' code, github.com/LMMMEng/TransXNet).
The tests compare them with what is built from the configs or read from the
metafile; a value typed again from a config is no test of that config.
"""
PAPER_GPUS = 8  # every setting of section 3 trains on 8 GPUs

# Section 1 (the variants): blocks and channels per stage, the drop path
# rates, and the ImageNet classifier's params (M), FLOPs (G) at 224x224 and
# top-1. The authors' released ImageNet checkpoint of each variant is
# transx-<variant>.pth.tar (section 2).
PAPER_VARIANTS = {
    't': dict(depths=[3, 3, 9, 3], channels=[48, 96, 224, 448],
              drop_path_imagenet=0.1, drop_path_dense=0.1, params=12.83,
              flops=1.8, top1=81.6),
    's': dict(depths=[4, 4, 12, 4], channels=[64, 128, 320, 512],
              drop_path_imagenet=0.2, drop_path_dense=0.2, params=26.86,
              flops=4.5, top1=83.8),
    'b': dict(depths=[4, 4, 21, 4], channels=[76, 152, 336, 672],
              drop_path_imagenet=0.4, drop_path_dense=0.3, params=48.01,
              flops=8.3, top1=84.6),
}

# Section 3: the recipes. Detection: RetinaNet and Mask R-CNN 1x.
PAPER_RETINANET = dict(
    lr=1e-4, weight_decay=1e-4, epochs=12, milestones=(8, 11), gamma=0.1,
    warmup_iters=500, warmup_ratio=1e-3, batch=16, scale=(1333, 800),
    size_divisor=32, out_strides=(8, 16, 32), fpn_out=256,
    fpn_strides=(8, 16, 32, 64, 128))
PAPER_MASK_RCNN = dict(
    PAPER_RETINANET, weight_decay=0.05, out_strides=(4, 8, 16, 32),
    fpn_strides=(4, 8, 16, 32, 64))
PAPER_SEM_FPN = dict(
    lr=2e-4, weight_decay=1e-4, iters=80000, warmup_iters=1000,
    warmup_ratio=0.1, min_lr_ratio=1e-8, batch=32, num_classes=150,
    fpn_out=256, fpn_outs=4, head_channels=128, dropout=0.1,
    scale=(2048, 512), ratio_range=(0.5, 2.0), crop=(512, 512),
    cat_max_ratio=0.75, size_divisor=32,
    # Not in the paper: the authors' semantic_segmentation config
    # (evaluation=dict(interval=4000, save_best='mIoU'), checkpoint_config
    # interval 4000, max_keep_ckpts=1), quoted in
    # configs/_base_/fpn_transxnet_ade20k.py.
    val_interval=4000, save_best='mIoU', max_keep_ckpts=1)
# ImageNet-1K, the authors' timm recipe; 'cooldown_epochs' is timm 0.6.12's
# create_scheduler default, which the authors' train.py keeps (10 epochs at
# the minimum lr after the 300 of the paper).
PAPER_IMAGENET = dict(
    lr=2e-3, weight_decay=0.05, epochs=300, cooldown_epochs=10,
    warmup_epochs=5, warmup_lr=1e-6, min_lr=1e-5, batch=1024, mixup=0.8,
    cutmix=1.0, label_smoothing=0.1, reprob=0.25,
    randaugment=dict(ops=2, magnitude=9, magnitude_std=0.5,
                     policies='timm_increasing', total_level=10),
    ema_decay={'t': 0.9998, 's': 0.99985, 'b': 0.99985},
    crop_pct={'t': 0.9, 's': 0.9, 'b': 0.95}, crop=224)

# Section 4 (Tables IV and V; COCO val2017, ADE20K val single scale): the
# paper's params (M), FLOPs (G, 800x1280) and results.
PAPER_RESULTS = {
    'retinanet_transxnet_t': dict(params=22.4, flops=187, box_ap=43.1),
    'retinanet_transxnet_s': dict(params=36.6, flops=242, box_ap=46.4),
    'retinanet_transxnet_b': dict(params=58.0, flops=317, box_ap=47.6),
    'mask_rcnn_transxnet_t': dict(params=32.5, flops=205, box_ap=44.5,
                                  mask_ap=40.6),
    'mask_rcnn_transxnet_s': dict(params=46.5, flops=261, box_ap=47.7,
                                  mask_ap=43.1),
    'mask_rcnn_transxnet_b': dict(params=67.6, flops=336, box_ap=48.8,
                                  mask_ap=43.8),
    'fpn_transxnet_t_ade20k': dict(miou=45.5),
    'fpn_transxnet_s_ade20k': dict(miou=48.5),
    'fpn_transxnet_b_ade20k': dict(miou=49.9),
}
# Section 4, "measured here with the authors' model inside mmdet 3.3.0 /
# mmseg 1.2.2 detectors built with the settings of section 3" (M params).
AUTHORS_MODEL_PARAMS = {
    'retinanet_transxnet_t': 22.44, 'retinanet_transxnet_s': 36.60,
    'retinanet_transxnet_b': 58.01, 'mask_rcnn_transxnet_t': 32.50,
    'mask_rcnn_transxnet_s': 46.52, 'mask_rcnn_transxnet_b': 67.56,
    'fpn_transxnet_t_ade20k': 16.60, 'fpn_transxnet_s_ade20k': 30.62,
    'fpn_transxnet_b_ade20k': 51.66,
}

# Not the paper's: the standard comparison protocols our extra configs
# follow (mmdet's Swin / ConvNeXt Cascade Mask R-CNN 3x, mmseg 1.x's Swin
# UperNet 160k), with the backbone of the paper's dense models.
PROTOCOL_CASCADE_3X = dict(
    lr=1e-4, weight_decay=0.05, epochs=36, milestones=(27, 33), gamma=0.1,
    warmup_iters=500, warmup_ratio=1e-3, batch=16, scale=(1333, (640, 800)))
PROTOCOL_UPERNET_160K = dict(
    lr=6e-5, weight_decay=0.01, iters=160000, warmup_iters=1500,
    warmup_ratio=1e-6, poly_power=1., batch=16, num_classes=150)
