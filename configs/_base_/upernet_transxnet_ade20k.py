# UperNet 160k on ADE20K (512x512) with a TransXNet backbone: the standard
# comparison protocol of mmseg's Swin and ConvNeXt configs, NOT in the paper
# (it has no numbers for it). Inherits mmseg's Swin-T UperNet config, i.e.
# mmseg's upernet_swin / ade20k / schedule_160k bases and Swin's recipe:
# UperHead 512 channels + FCN auxiliary head on stage 3 (loss weight 0.4),
# SyncBN; AdamW lr 6e-5, betas (0.9, 0.999), weight decay 0.01, none on the
# norms and the relative position biases; 1500-iteration linear warm-up from
# 1e-6, then poly (power 1) to 0 at 160k; total batch 16 (8 GPUs x 2);
# mmseg's ADE20K pipelines (test: resize to (2048, 512) keeping the ratio).
# Backbone as in the paper's Semantic FPN (drop path 0.1 / 0.2 / 0.3, the
# authors' ImageNet weights). The leaf configs
# (upernet_transxnet_{t,s,b}_8xb2-160k_ade20k-512x512.py) set the variant.
_base_ = [
    'mmseg::swin/'
    'swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py',
    './transxnet_dense.py'
]
custom_imports = dict(imports=['transxnet_mm'], allow_failed_imports=False)

# The ADE20K root (mmseg's layout, ADEChallengeData2016/): the environment
# variable ADE20K_ROOT, else data/ade/ADEChallengeData2016.
data_root = '{{$ADE20K_ROOT:data/ade/ADEChallengeData2016}}'

model = dict(
    backbone={{_base_.dense_backbone}},
    decode_head=dict(in_channels=[48, 96, 224, 448]),
    auxiliary_head=dict(in_channels=224))

optim_wrapper = dict(
    paramwise_cfg=dict(
        _delete_=True,
        norm_decay_mult=0.,
        custom_keys={'relative_pos_bias': dict(decay_mult=0.)}))

train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
# The protocol's total batch: 8 GPUs x 2 images (for --auto-scale-lr).
auto_scale_lr = dict(enable=False, base_batch_size=16)
