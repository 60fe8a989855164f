# RetinaNet-TransXNet-T's fit check on the real COCO val2017 sample: the paper
# config with the sample's data, scale and schedule (_base_/coco_sample.py).
_base_ = ['../retinanet_transxnet_t.py', './_base_/coco_sample.py']
globals().update(_base_.pop('coco_sample'))

# Anchors at the sample's half scale: RetinaNet's smallest (32 px at stride 8,
# octave_base_scale=4) would be 64 px objects at full scale; 2 keeps them at
# the objects' full-scale sizes.
model.bbox_head = dict(anchor_generator=dict(octave_base_scale=2))
