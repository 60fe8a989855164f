# Settings shared by the TransXNet detection bases (RetinaNet, Mask R-CNN,
# Cascade Mask R-CNN), referenced there as {{_base_.<name>}}: they cannot be
# plain overrides here, since mmdet's base of each also defines
# train_dataloader and default_hooks.

# Every training batch full (transxnet_mm/datasets/samplers.py): mmdet 3's
# AspectRatioBatchSampler yields a short batch at an epoch's end, one image
# for an odd-sized dataset, on which IDConv's BatchNorm cannot train; the
# authors' mmdet 2 GroupSampler padded it by repeating images, as this does.
full_batch_sampler = dict(
    type='FullBatchSampler',
    batch_sampler=dict(type='AspectRatioBatchSampler'))

# The authors keep the best checkpoint: mmdet 2's save_best='auto' took the
# first metric, bbox_mAP (also for Mask R-CNN, whose bbox results come
# first). MMEngine's 'auto' also takes the first; named here to be explicit.
best_checkpoint = dict(save_best='coco/bbox_mAP', rule='greater')
