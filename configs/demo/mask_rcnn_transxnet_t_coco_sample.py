# Mask R-CNN-TransXNet-T's fit check on the real COCO val2017 sample: the
# paper config with the sample's data, scale and schedule
# (_base_/coco_sample.py), loading the masks too; bbox and segm COCO AP.
_base_ = ['../mask_rcnn_transxnet_t.py', './_base_/coco_sample.py']
globals().update(_base_.pop('coco_sample'))

for loader in (train_dataloader, val_dataloader, test_dataloader):
    for step in loader.dataset.pipeline:
        if step.type == 'LoadAnnotations':
            step.with_mask = True
del loader, step
