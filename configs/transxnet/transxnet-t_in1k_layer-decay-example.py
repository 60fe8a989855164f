# EXAMPLE, not from the paper: fine-tune TransXNet-T on ImageNet-1K from the
# authors' checkpoint with layer-wise learning-rate decay, using mmpretrain's
# LearningRateDecayOptimWrapperConstructor. It asks the model for each
# parameter's depth: ImageClassifier.get_layer_depth hands
# 'backbone.'-prefixed names to TransXNet.get_layer_depth(param_name, prefix)
# (mmpretrain's convention, as ConvNeXt's: (layer_id, num_layers), the stem
# shallowest, the head deepest), and parameter i gets
#     lr = base_lr * layer_decay_rate ** (num_layers - layer_id - 1).
# Copy this pattern for your own fine-tuning; the numbers below are a
# starting point, not a tuned recipe.
# Settings not set here: _base_/transxnet_in1k.py via transxnet-t_in1k.py.
_base_ = '../transxnet-t_in1k.py'

model = dict(
    backbone=dict(
        # The authors' ImageNet backbone weights; the head starts afresh
        # (set head.num_classes for another dataset).
        init_cfg=dict(type='Pretrained',
                      checkpoint='checkpoints/transx-t.pth.tar')))

optim_wrapper = dict(
    optimizer=dict(lr=1e-4),
    # mmpretrain's constructor (this config's default scope is mmpretrain).
    constructor='LearningRateDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        _delete_=True,
        layer_decay_rate=0.8,  # each block shallower: lr x 0.8
        # The same no-decay set as the base recipe (norms and biases).
        norm_decay_mult=0.,
        bias_decay_mult=0.))

# 30 epochs: 2 of linear warm-up, then cosine to 1e-6.
max_epochs = 30
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=2,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-6, by_epoch=True, begin=2,
         end=max_epochs, convert_to_iter_based=True)
]
train_cfg = dict(max_epochs=max_epochs)
