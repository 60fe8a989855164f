"""ImageNet classification configs: build, the authors' checkpoints and
logits, timm's test transform, the training recipe, and the tools."""
import glob
import math
import os.path as osp
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import (ROOT, backbone_facts, config_file, linear_drop_path,
                     load_tool, lr_curve, weight_decays)
from paper import PAPER_GPUS, PAPER_IMAGENET, PAPER_VARIANTS
from mmengine.config import Config
from mmengine.registry import init_default_scope

from transxnet_mm.apis import build_model
from transxnet_mm.models.utils.ckpt_convert import (convert_official,
                                                    official_to_mm_checkpoint)
from reference_model import reference_forward

VARIANTS = ['t', 's', 'b']


def eval_resize(variant: str) -> int:
    """timm's eval resize of the short edge: floor(224 / crop_pct)."""
    return math.floor(PAPER_IMAGENET['crop'] /
                      PAPER_IMAGENET['crop_pct'][variant])


def config(variant: str) -> Config:
    return Config.fromfile(config_file(f'transxnet-{variant}_in1k'))


def build_classifier(cfg: Config, device: str = 'cpu') -> torch.nn.Module:
    """The config's ImageClassifier, built in mmpretrain's scope; on the
    'meta' device for structure-only checks (no weights are initialised)."""
    return build_model(cfg, device=device, inference=False)


def authors_logits(sd: dict, x: torch.Tensor) -> torch.Tensor:
    """The authors' classifier on the reference features: GroupNorm (their
    classifier.0) -> global average pool -> 1x1 conv (classifier.2)."""
    feat = reference_forward(sd, x, out_norms={
        'norm3.weight': sd['classifier.0.weight'],
        'norm3.bias': sd['classifier.0.bias']})[3]
    return F.conv2d(feat.mean((2, 3), keepdim=True), sd['classifier.2.weight'],
                    sd['classifier.2.bias']).flatten(1)


@pytest.fixture(scope='module')
def coco_images(coco_sample):
    images = sorted(glob.glob(osp.join(coco_sample, 'val2017', '*.jpg')))
    assert len(images) == 10
    return images


@pytest.fixture(scope='module')
def tiny_imagenet(coco_images, tmp_path_factory):
    """The 10 real COCO images in ImageNet's folder layout, with made-up
    labels: 5 images in each of two class folders."""
    root = tmp_path_factory.mktemp('tiny_imagenet')
    for i, path in enumerate(coco_images):
        folder = root / f'n0000000{i % 2}'
        folder.mkdir(exist_ok=True)
        shutil.copy(path, folder)
    return str(root)


@pytest.fixture
def authors_ckpt(official_sd, tmp_path):
    path = str(tmp_path / 'transx-t.pth.tar')
    torch.save({'state_dict': official_sd('t')}, path)
    return path


@pytest.mark.parametrize('variant', VARIANTS)
def test_classifier_is_the_authors(variant):
    """The built classifier (on the 'meta' device): the paper's parameters;
    the authors' GroupNorm -> pool -> classifier on the last stage alone
    (one output norm, norm3), 1000 ImageNet classes from the last stage's
    channels; drop path growing to the paper's ImageNet rate; SyncBN."""
    from mmpretrain.datasets.categories import IMAGENET_CATEGORIES
    model = build_classifier(config(variant), device='meta')
    params = sum(p.numel() for p in model.parameters()) / 1e6
    assert round(params, 2) == PAPER_VARIANTS[variant]['params']
    assert type(model).__name__ == 'ImageClassifier'
    facts = backbone_facts(model.backbone)
    assert facts['variant'] == variant
    norms = {n.split('.')[0] for n, _ in model.backbone.named_parameters()
             if n.startswith('norm')}
    assert norms == {f'norm{len(facts["depths"]) - 1}'}
    assert type(model.neck).__name__ == 'GlobalAveragePooling'
    assert model.head.fc.out_features == len(IMAGENET_CATEGORIES)
    assert model.head.fc.in_features == facts['channels'][-1]
    rate = PAPER_VARIANTS[variant]['drop_path_imagenet']
    assert facts['drop_path'] == pytest.approx(
        linear_drop_path(rate, sum(facts['depths'])))
    assert facts['batch_norms'] == {'SyncBatchNorm'}


@pytest.mark.parametrize('variant', VARIANTS)
def test_ema_is_timms_model_ema(variant):
    """The config's EMA hook, built and run on a small model as the Runner
    runs it: after an update each parameter AND BatchNorm statistic (timm's
    ModelEmaV2 averages the whole state) is decay x the average + (1 -
    decay) x the model's, with the authors' decay of the variant."""
    import types
    from mmengine.registry import HOOKS
    init_default_scope('mmpretrain')
    ema_cfg, = [h for h in config(variant).custom_hooks
                if h.type == 'EMAHook']
    hook = HOOKS.build({k: v for k, v in ema_cfg.items()
                        if k != 'priority'})  # as Runner.register_hook
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1),
                              torch.nn.BatchNorm2d(4))
    runner = types.SimpleNamespace(model=net, iter=0, epoch=0)
    hook.before_run(runner)
    hook.after_train_iter(runner, 0)  # the first update copies
    before = {k: v.clone()
              for k, v in hook.ema_model.module.state_dict().items()}
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.)
        net[1].running_mean.add_(1.)
    runner.iter = 1
    hook.after_train_iter(runner, 1)
    decay = PAPER_IMAGENET['ema_decay'][variant]
    after = hook.ema_model.module.state_dict()
    for key in ('0.weight', '0.bias', '1.weight', '1.running_mean'):
        expected = decay * before[key] + (1 - decay) * net.state_dict()[key]
        assert torch.allclose(after[key], expected, rtol=0, atol=1e-7), key
        assert not torch.equal(after[key], before[key])


def test_recipe_is_the_authors(coco_images, monkeypatch):
    """The built objects of the T recipe against the authors' timm recipe:
    AdamW at the paper's lr (no clipping) for a total batch of 8 x 128, the
    base of --auto-scale-lr; mixup 0.8 / cutmix 1.0, one of the two per
    batch; label smoothing 0.1 (the built loss on a one-hot target); the
    train pipeline's RandAugment m9-mstd0.5-inc1 and erasing 0.25, giving a
    224x224 crop of a real image; the ImageNet root mmpretrain's, or
    IMAGENET_ROOT."""
    from mmengine.hub import get_config
    from mmpretrain.registry import TRANSFORMS
    paper = PAPER_IMAGENET
    cfg = config('t')
    model = build_classifier(cfg, device='meta')
    wrapper, decay = weight_decays(model, cfg)
    assert type(wrapper.optimizer).__name__ == 'AdamW'
    assert wrapper.optimizer.defaults['lr'] == paper['lr']
    assert max(decay.values()) == paper['weight_decay']
    assert wrapper.clip_grad_kwargs is None
    assert cfg.train_dataloader.batch_size * PAPER_GPUS == \
        cfg.auto_scale_lr.base_batch_size == paper['batch']
    augments = model.data_preprocessor.batch_augments
    assert [(type(a).__name__, a.alpha) for a in augments.augments] == \
        [('Mixup', paper['mixup']), ('CutMix', paper['cutmix'])]
    assert augments.probs is None or np.allclose(augments.probs, 0.5)
    # Label smoothing: the built loss of the head on a one-hot target is the
    # cross-entropy against (1 - eps) one-hot + eps / classes.
    loss = model.head.loss_module
    classes = model.head.num_classes
    logits = torch.randn(2, classes,
                         generator=torch.Generator().manual_seed(0))
    target = F.one_hot(torch.tensor([3, 7]), classes).float()
    eps = paper['label_smoothing']
    smoothed = (1 - eps) * target + eps / classes
    expected = -(smoothed * logits.log_softmax(1)).sum(1).mean()
    assert loss(logits, target) == pytest.approx(expected.item(), rel=1e-5)
    init_default_scope('mmpretrain')
    steps = [TRANSFORMS.build(t)
             for t in cfg.train_dataloader.dataset.pipeline]
    kinds = {type(t).__name__: t for t in steps}
    ra, erase = kinds['RandAugment'], kinds['RandomErasing']
    want = paper['randaugment']
    assert (ra.num_policies, ra.magnitude_level, ra.magnitude_std,
            ra.total_level) == (want['ops'], want['magnitude'],
                                want['magnitude_std'], want['total_level'])
    timm_increasing = TRANSFORMS.build(dict(
        type='RandAugment', policies=want['policies'], num_policies=1,
        magnitude_level=1)).policies
    assert [(p['type'], p.get('magnitude_range')) for p in ra.policies] == \
        [(p['type'], p.get('magnitude_range')) for p in timm_increasing]
    assert erase.erase_prob == paper['reprob']
    np.random.seed(0)
    results = dict(img_path=coco_images[0])
    for t in steps:
        results = t(results)
    assert tuple(results['inputs'].shape) == (3, paper['crop'], paper['crop'])
    mmpretrain_root = get_config('mmpretrain::_base_/datasets/'
                                 'imagenet_bs64_swin_224.py'
                                 ).train_dataloader.dataset.data_root
    assert cfg.train_dataloader.dataset.data_root == mmpretrain_root
    monkeypatch.setenv('IMAGENET_ROOT', '/datasets/imagenet')
    cfg = config('t')
    for loader in ('train', 'val', 'test'):
        assert cfg[f'{loader}_dataloader'].dataset.data_root == \
            '/datasets/imagenet'


def test_lr_schedule_follows_timm():
    """The lr the built schedulers give per epoch of the built train loop
    against timm's cosine (warm-up from 1e-6 over 5 epochs, min 1e-5,
    stepped per epoch) and its 10 default cool-down epochs: 310 epochs."""
    paper = PAPER_IMAGENET
    cfg = config('t')
    total = paper['epochs'] + paper['cooldown_epochs']
    lrs, loop = lr_curve(cfg, 1, range(total))
    assert loop.max_epochs == total
    base, warm, low = paper['lr'], paper['warmup_lr'], paper['min_lr']

    def timm(e: int) -> float:
        if e < paper['warmup_epochs']:
            return warm + e * (base - warm) / paper['warmup_epochs']
        if e >= paper['epochs']:
            return low
        return low + 0.5 * (base - low) * (
            1 + math.cos(math.pi * e / paper['epochs']))

    lrs = [lrs[e] for e in range(total)]
    expected = [timm(e) for e in range(total)]
    warmup = paper['warmup_epochs']
    assert np.allclose(lrs[:warmup], expected[:warmup], rtol=1e-9, atol=0)
    assert max(abs(a - b) for a, b in zip(lrs, expected)) < 0.016 * base
    assert abs(lrs[-1] - low) < 0.01 * low
    for v in 'sb':
        other = config(v)
        for key in ('optim_wrapper', 'param_scheduler', 'train_cfg'):
            assert other[key] == cfg[key], (v, key)


def test_weight_decay_is_timms_filter_bias_and_bn(official_sd):
    """timm (filter_bias_and_bn): no decay iff the authors' parameter has
    ndim <= 1 or its name ends in '.bias' -- checked for every parameter."""
    from mmengine.optim import build_optim_wrapper
    cfg = config('t')
    model = build_classifier(cfg, device='meta')
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    ours = {id(p): n for n, p in model.named_parameters()}
    decay = {ours[id(p)]: g['weight_decay']
             for g in wrapper.optimizer.param_groups for p in g['params']}
    assert len(decay) == len(ours)
    authors = {}
    for key, value in official_sd('t').items():
        if 'running_' in key or 'num_batches' in key:
            continue
        converted, _ = convert_official({key: value}, with_head=True)
        authors[next(iter(converted))] = (key, value.ndim)
    assert set(authors) == set(decay)
    wd = PAPER_IMAGENET['weight_decay']
    for name, d in decay.items():
        key, ndim = authors[name]
        timm_no_decay = ndim <= 1 or key.endswith('.bias')
        assert d == (0. if timm_no_decay else wd), (name, key, d)
    # Cases where rules could disagree.
    assert decay['backbone.stages.0.blocks.0.layer_scale_1.weight'] == wd
    assert decay['backbone.stages.0.blocks.0.layer_scale_1.bias'] == 0.
    assert decay['backbone.stages.0.relative_pos_bias'] == wd
    assert decay['backbone.stages.0.blocks.0.token_mixer.local_unit.bias'] == 0.
    assert decay['backbone.norm3.weight'] == decay['head.fc.bias'] == 0.


@pytest.mark.slow
def test_authors_checkpoint_loads_completely_with_their_logits(
        official_sd, authors_ckpt, tmp_path):
    """tools/test.py's path: official_to_mm_checkpoint, then MMEngine's
    load_checkpoint; the logits are the authors' GroupNorm -> pool -> conv."""
    from mmengine.runner import load_checkpoint
    converted = str(tmp_path / 'converted.pth')
    summary = official_to_mm_checkpoint(authors_ckpt, converted)
    assert summary.startswith('TransXNet-T (depths [3, 3, 9, 3]')
    model = build_classifier(config('t')).eval()
    load_checkpoint(model, converted, map_location='cpu', strict=True)
    sd = official_sd('t')
    # Not 224x224, so the relative position biases are resized as well.
    x = torch.randn(1, 3, 128, 160, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model(x, mode='tensor')
        expected = authors_logits(sd, x)
    assert logits.shape == expected.shape == (1, 1000)
    assert (logits - expected).abs().max() / expected.abs().max() < 1e-4
    assert expected.std() > 0.1 * expected.abs().max()  # not a flat output


@pytest.fixture
def release_url(authors_ckpt, monkeypatch):
    """The authors' release URL of transx-t.pth.tar, served from the local
    file (with timm's argparse.Namespace beside the weights, as released)
    instead of GitHub: MMEngine's http download is replaced."""
    import argparse

    from transxnet_mm.apis import AUTHORS_RELEASE, checkpoint
    ckpt = torch.load(authors_ckpt, weights_only=True)
    ckpt['args'] = argparse.Namespace(model='transxnet_t')
    torch.save(ckpt, authors_ckpt)
    urls = []

    def download(url, map_location=None):
        urls.append(url)
        return torch.load(authors_ckpt, map_location=map_location)

    monkeypatch.setattr(checkpoint, 'load_from_http', download)
    url = AUTHORS_RELEASE + 'v1.0/transx-t.pth.tar'
    yield url
    assert urls and set(urls) == {url}


def test_classifier_by_name_in_mmpretrain(release_url, official_sd,
                                          coco_images):
    """After ``import transxnet_mm``: mmpretrain's get_model and inferencer
    find 'transxnet-t_in1k' and load the authors' file from the metafile's
    URL, giving their logits."""
    import mmpretrain
    from mmpretrain import ImageClassificationInferencer
    assert {'transxnet-t_in1k', 'transxnet-s_in1k', 'transxnet-b_in1k'} <= \
        set(mmpretrain.list_models('transxnet*'))
    metainfo = mmpretrain.ModelHub.get('transxnet-t_in1k')
    assert metainfo.weights == release_url
    model = mmpretrain.get_model('transxnet-t_in1k', pretrained=True)
    x = torch.randn(1, 3, 96, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model(x, mode='tensor')
        expected = authors_logits(official_sd('t'), x)
    assert (logits - expected).abs().max() / expected.abs().max() < 1e-4
    result = ImageClassificationInferencer('transxnet-t_in1k')(
        coco_images[0])[0]
    assert result['pred_scores'].shape == (1000, )
    assert 0 <= result['pred_label'] < 1000


def test_backbone_from_the_release_url_is_the_files(release_url, official_sd):
    """A dense config's backbone init_cfg with the authors' URL: their
    backbone weights, the output norms fresh (not the classifier's
    GroupNorm), as from the local file."""
    from transxnet_mm.models import TransXNet
    model = TransXNet('t', init_cfg=dict(type='Pretrained',
                                         checkpoint=release_url))
    model.init_weights()
    sd = official_sd('t')
    assert torch.equal(model.stages[3].relative_pos_bias,
                       sd['relative_pos_enc.3'])
    assert torch.equal(model.norm3.weight, torch.ones(448))


def test_non_authors_checkpoints_are_left_alone(authors_ckpt, tmp_path):
    from mmengine.logging import HistoryBuffer
    ours = str(tmp_path / 'ours.pth')
    assert official_to_mm_checkpoint(authors_ckpt, ours)
    training = str(tmp_path / 'epoch_1.pth')
    torch.save({'state_dict': {'a': torch.zeros(1)},
                'message_hub': HistoryBuffer()}, training)
    for path in (ours, training):
        out = str(tmp_path / 'should_not_exist.pth')
        assert official_to_mm_checkpoint(path, out) is None
        assert not osp.exists(out)


@pytest.mark.parametrize('variant', VARIANTS)
def test_test_pipeline_is_timms_eval_transform(variant, coco_images):
    """Short edge to floor(224 / crop_pct) with PIL bicubic, center crop 224:
    pixel for pixel what timm's (torchvision's) transform gives."""
    from PIL import Image
    from torchvision import transforms
    init_default_scope('mmpretrain')
    from mmpretrain.registry import TRANSFORMS
    steps = [TRANSFORMS.build(t)
             for t in config(variant).test_dataloader.dataset.pipeline]
    load, resize, crop, pack = steps
    assert (resize.edge, resize.interpolation, resize.backend) == \
        ('short', 'bicubic', 'pillow')
    size = PAPER_IMAGENET['crop']
    assert crop.crop_size == (size, size)
    path = coco_images[0]
    results = load(dict(img_path=path))
    h, w = results['img'].shape[:2]
    results = resize(results)
    short = eval_resize(variant)
    long = int(short * max(h, w) / min(h, w))
    assert results['img'].shape[:2] == ((short, long) if h < w else
                                        (long, short))
    results = crop(results)
    assert results['img'].shape == (size, size, 3)
    timm_eval = transforms.Compose([
        transforms.Resize(
            short, interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.CenterCrop(size)
    ])
    with Image.open(path) as img:
        expected = np.asarray(timm_eval(img.convert('RGB')))
    assert np.array_equal(results['img'][..., ::-1], expected)
    assert pack(results)['inputs'].shape == (3, size, size)


@pytest.mark.slow
def test_one_training_iteration_on_real_images(tiny_imagenet, tmp_path):
    """The full recipe (RandAugment, erasing, mixup/cutmix, label smoothing,
    EMA, AdamW with its decay rules) for one iteration of 4 images at 64x64
    through MMEngine's Runner."""
    from mmengine.runner import Runner
    cfg = config('t')
    cfg.work_dir = str(tmp_path / 'work')
    pipeline = cfg.train_dataloader.dataset.pipeline
    crop, = [t for t in pipeline if t.type == 'RandomResizedCrop']
    crop.scale = 64
    cfg.train_dataloader = dict(
        batch_size=4, num_workers=0, persistent_workers=False,
        sampler=dict(type='DefaultSampler', shuffle=True),
        dataset=dict(type='CustomDataset', data_root=tiny_imagenet,
                     indices=4, pipeline=pipeline))
    for key in ('val_dataloader', 'val_cfg', 'val_evaluator',
                'test_dataloader', 'test_cfg', 'test_evaluator'):
        cfg[key] = None
    cfg.train_cfg = dict(by_epoch=True, max_epochs=1)
    cfg.default_hooks.checkpoint = None
    cfg.default_hooks.logger.interval = 1
    cfg.randomness = dict(seed=0)
    runner = Runner.from_cfg(cfg)
    before = runner.model.head.fc.weight.detach().clone()
    runner.train()
    loss = runner.message_hub.get_scalar('train/loss').data[0]
    assert len(loss) == 1 and np.isfinite(loss).all() and loss[0] > 0
    assert runner.model.data_preprocessor.batch_augments is not None
    assert not torch.equal(runner.model.head.fc.weight, before)
    ema, = [h for h in runner.hooks if type(h).__name__ == 'EMAHook']
    assert ema.ema_model.steps == 1
    assert math.isclose(ema.ema_model.momentum,
                        1 - PAPER_IMAGENET['ema_decay']['t'])


@pytest.fixture(scope='module')
def tiny_config(tiny_imagenet, tmp_path_factory) -> str:
    """The T config testing on 2 of the real images at 64x64 (the real test
    transform is checked above), dumped to a file for the tools."""
    cfg = config('t')
    pipeline = cfg.test_dataloader.dataset.pipeline
    resize, = [t for t in pipeline if t.type == 'ResizeEdge']
    crop, = [t for t in pipeline if t.type == 'CenterCrop']
    resize.scale, crop.crop_size = 72, 64
    cfg.test_dataloader = dict(
        batch_size=2, num_workers=0, persistent_workers=False,
        sampler=dict(type='DefaultSampler', shuffle=False),
        dataset=dict(type='CustomDataset', data_root=tiny_imagenet, indices=2,
                     pipeline=pipeline))
    path = str(tmp_path_factory.mktemp('configs') / 'transxnet_t_tiny.py')
    cfg.dump(path)
    return path


@pytest.mark.slow
def test_tools_test_evaluates_an_authors_checkpoint(
        official_sd, authors_ckpt, tiny_config, tmp_path):
    """tools/test.py on the authors' file: converted, loaded completely, and
    the scores it evaluates (EMA hook in place) are the authors' model's."""
    import pickle
    preds = str(tmp_path / 'preds.pkl')
    out = subprocess.run(
        [sys.executable, osp.join(ROOT, 'tools/test.py'), tiny_config,
         authors_ckpt, '--work-dir', str(tmp_path / 'work'), '--out', preds],
        cwd=ROOT, text=True, capture_output=True)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-3000:]
    assert "holds the authors' TransXNet keys: converted" in log
    assert 'do not match exactly' not in log  # no missing / unexpected keys
    assert 'accuracy/top1' in log
    with open(preds, 'rb') as f:
        results = pickle.load(f)
    assert len(results) == 2
    init_default_scope('mmpretrain')
    from mmpretrain.registry import TRANSFORMS
    cfg = Config.fromfile(tiny_config)
    pipeline = [TRANSFORMS.build(t)
                for t in cfg.test_dataloader.dataset.pipeline[:-1]]
    mean = torch.tensor(cfg.data_preprocessor.mean).view(1, 3, 1, 1)
    std = torch.tensor(cfg.data_preprocessor.std).view(1, 3, 1, 1)
    sd = official_sd('t')
    for result in results:
        data = dict(img_path=result['img_path'])
        for t in pipeline:
            data = t(data)
        rgb = torch.from_numpy(data['img'][..., ::-1].copy()).float()
        x = (rgb.permute(2, 0, 1)[None] - mean) / std
        with torch.no_grad():
            logits = authors_logits(sd, x)
        assert torch.allclose(result['pred_score'], logits.softmax(1)[0],
                              rtol=1e-4, atol=1e-7)


@pytest.mark.slow
def test_image_demo_prints_top5(authors_ckpt, tiny_config, coco_images,
                                tmp_path, capsys, monkeypatch):
    from mmpretrain.datasets.categories import IMAGENET_CATEGORIES
    demo = load_tool('image_demo.py')
    monkeypatch.setattr(sys, 'argv', [
        'image_demo.py', coco_images[0], tiny_config, authors_ckpt,
        '--out-dir', str(tmp_path / 'out')
    ])
    demo.main()
    printed = capsys.readouterr().out
    assert "holds the authors' TransXNet keys" in printed
    lines = printed[printed.index(coco_images[0] + ': top-5'):].splitlines()
    ranked = lines[1:6]
    assert [line.split('.')[0].strip() for line in ranked] == \
        ['1', '2', '3', '4', '5']
    scores = [float(line.split()[1]) for line in ranked]
    assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1
    for line in ranked:
        label = int(line.rsplit('(', 1)[1].rstrip(')'))
        assert IMAGENET_CATEGORIES[label] in line
