# The demo detectors' fit check on the real COCO val2017 sample
# (tools/dataset_converters/fetch_coco_sample.py: 10 images, official
# annotations), sized for 2 CPU cores. A fit check trains on a few images
# until the model fits them and measures COCO AP on those same images: it
# shows that the backbone, neck, head and training loop learn, not accuracy.
# The 2 held-out images get a low AP: 8 images cannot teach a backbone that
# starts from scratch (no ImageNet weights can be downloaded here) to
# generalise.
#
# All of it sits under one key because a demo config also inherits a paper
# config, whose mmdet bases already define these top-level keys (MMEngine
# refuses a key that two bases define). A demo config lays it over the paper
# config with ``globals().update(_base_.pop('coco_sample'))``.


def _coco_sample() -> dict:  # a function: MMEngine leaves it out of the config
    data_root = 'data/coco_sample/'
    # The json lists the images in a fixed order: the first 8 train, the last
    # 2 (ids 86956 and 424349: people, a handbag, a couch, pizza, ovens) are
    # held out. Each split is scored against its own ground truth
    # (ann_file=None), as CocoMetric would count the other split's images,
    # which get no predictions, as misses.
    dataset = dict(
        data_root=data_root,
        ann_file='annotations/instances_val2017_sample.json',
        data_prefix=dict(img='val2017/'))
    train_indices, held_out_indices = 8, [8, 9]
    # 0.4 of COCO's 640x480. No augmentation: a fit check asks whether the
    # model can fit these images, not whether it generalises.
    img_scale = (256, 256)
    max_epochs = 60
    max_iters = max_epochs * train_indices // 2
    warmup_iters = 20
    lr = 2e-4
    test_pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='Resize', scale=img_scale, keep_ratio=True),
        dict(type='LoadAnnotations', with_bbox=True),
        # 'instances': the ground truth CocoMetric scores against.
        dict(type='PackDetInputs',
             meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                        'scale_factor', 'instances'))
    ]
    loader = dict(num_workers=0, persistent_workers=False)
    return dict(
        model=dict(
            backbone=dict(
                init_cfg=None,  # from scratch
                drop_path_rate=0.,
                # One CPU process: BN over the batch of 2 (IDConv's pooled
                # descriptor needs 2 images per BatchNorm in training).
                norm_cfg=dict(type='BN', requires_grad=True))),
        train_dataloader=dict(
            # 8 images in batches of 2 (by aspect ratio: 2 portrait, 6
            # landscape); the paper configs' FullBatchSampler pads any
            # short batch, so none has 1 image.
            batch_size=2,
            dataset=dict(
                indices=train_indices,
                pipeline=[
                    dict(type='LoadImageFromFile'),
                    dict(type='LoadAnnotations', with_bbox=True),
                    dict(type='Resize', scale=img_scale, keep_ratio=True),
                    dict(type='PackDetInputs')
                ],
                **dataset),
            **loader),
        # Validation is the fit check: the training images, not augmented.
        val_dataloader=dict(
            batch_size=1,
            dataset=dict(
                indices=train_indices, pipeline=test_pipeline, **dataset),
            **loader),
        test_dataloader=dict(
            batch_size=1,
            dataset=dict(
                indices=held_out_indices, pipeline=test_pipeline, **dataset),
            **loader),
        val_evaluator=dict(ann_file=None),
        test_evaluator=dict(ann_file=None),
        train_cfg=dict(max_epochs=max_epochs, val_interval=20),
        # 2x the paper's lr (it fine-tunes ImageNet weights; these start
        # from scratch), gradients clipped against early spikes.
        optim_wrapper=dict(
            optimizer=dict(lr=lr), clip_grad=dict(max_norm=10, norm_type=2)),
        # A short linear warm-up, then a cosine to 0: the last epochs, at a
        # small lr, let BatchNorm's running statistics (used at test time)
        # catch up with weights that no longer move.
        param_scheduler=[
            dict(type='LinearLR', start_factor=0.01, by_epoch=False,
                 begin=0, end=warmup_iters),
            dict(type='CosineAnnealingLR', by_epoch=False, begin=0,
                 end=max_iters, T_max=max_iters, eta_min=0.)
        ],
        default_hooks=dict(
            logger=dict(interval=4),
            checkpoint=dict(interval=max_epochs),
            # Drawings (tools/test.py --show-dir): ground truth beside the
            # detections that score at least 0.3.
            visualization=dict(score_thr=0.3)),
        log_processor=dict(window_size=4),
        randomness=dict(seed=0))


coco_sample = _coco_sample()
