"""ImageNet classification configs: build, the authors' checkpoints and
logits, timm's test transform, the training recipe, and the tools."""
import glob
import importlib.util
import math
import os.path as osp
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import ROOT, config_file
from mmengine.config import Config
from mmengine.registry import init_default_scope

from transxnet_mm.models.convert import (convert_official,
                                         official_to_mm_checkpoint)
from transxnet_mm.models.reference import reference_forward

# Paper Table/README: ImageNet classifier parameters (M), rounded to 2 places.
PAPER_PARAMS = {'t': 12.83, 's': 26.86, 'b': 48.01}
# timm's eval resize: floor(224 / crop_pct), crop_pct 0.9 (T, S), 0.95 (B).
RESIZE = {'t': 248, 's': 248, 'b': 235}
EMA_DECAY = {'t': 0.9998, 's': 0.99985, 'b': 0.99985}
DROP_PATH = {'t': 0.1, 's': 0.2, 'b': 0.4}


def config(variant: str) -> Config:
    return Config.fromfile(config_file(f'transxnet_{variant}_in1k'))


def build_classifier(cfg: Config, device: str = 'cpu') -> torch.nn.Module:
    """The config's ImageClassifier, built in mmpretrain's scope; on the
    'meta' device for structure-only checks (no weights are initialised)."""
    init_default_scope('mmpretrain')
    from mmpretrain.registry import MODELS
    model_cfg = cfg.model.copy()
    model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    with torch.device(device):
        return MODELS.build(model_cfg)


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


@pytest.mark.parametrize('variant', ['t', 's', 'b'])
def test_config_builds_with_paper_params(variant):
    cfg = config(variant)
    model = build_classifier(cfg, device='meta')
    params = sum(p.numel() for p in model.parameters()) / 1e6
    assert round(params, 2) == PAPER_PARAMS[variant]
    assert type(model).__name__ == 'ImageClassifier'
    assert model.backbone.out_indices == (3, )
    assert type(model.neck).__name__ == 'GlobalAveragePooling'
    assert model.head.fc.out_features == 1000
    assert model.head.fc.in_features == model.backbone.channels[-1]
    assert cfg.model.backbone.drop_path_rate == DROP_PATH[variant]
    ema, = cfg.custom_hooks
    assert ema.type == 'EMAHook' and ema.update_buffers
    assert math.isclose(ema.momentum, 1 - EMA_DECAY[variant])
    for loader in (cfg.val_dataloader, cfg.test_dataloader):
        resize = loader.dataset.pipeline[1]
        assert (resize.type, resize.scale) == ('ResizeEdge', RESIZE[variant])


def test_recipe_is_the_authors(monkeypatch):
    cfg = config('t')
    opt = cfg.optim_wrapper.optimizer
    assert (opt.type, opt.lr, opt.weight_decay) == ('AdamW', 2e-3, 0.05)
    assert cfg.optim_wrapper.get('clip_grad') is None
    assert cfg.train_dataloader.batch_size * 8 == \
        cfg.auto_scale_lr.base_batch_size == 1024
    mixup, cutmix = cfg.model.train_cfg.augments
    assert (mixup.type, mixup.alpha, cutmix.type, cutmix.alpha) == \
        ('Mixup', 0.8, 'CutMix', 1.0)
    loss = cfg.model.head.loss
    assert (loss.type, loss.label_smooth_val, loss.mode) == \
        ('LabelSmoothLoss', 0.1, 'original')
    steps = {t.type: t for t in cfg.train_dataloader.dataset.pipeline}
    ra = steps['RandAugment']
    assert (ra.policies, ra.num_policies, ra.magnitude_level,
            ra.magnitude_std, ra.total_level) == ('timm_increasing', 2, 9,
                                                  0.5, 10)
    assert steps['RandomErasing'].erase_prob == 0.25
    assert cfg.train_dataloader.dataset.data_root == 'data/imagenet'
    monkeypatch.setenv('IMAGENET_ROOT', '/datasets/imagenet')
    cfg = config('t')
    for loader in ('train', 'val', 'test'):
        assert cfg[f'{loader}_dataloader'].dataset.data_root == \
            '/datasets/imagenet'


def test_lr_schedule_follows_timm():
    """timm's cosine (warm-up 1e-6 over 5 epochs, min 1e-5, stepped per
    epoch) and its 10 default cool-down epochs: 310 epochs."""
    from mmengine.optim.scheduler import CosineAnnealingLR, LinearLR
    cfg = config('t')
    assert cfg.train_cfg.max_epochs == 310
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([param], lr=cfg.optim_wrapper.optimizer.lr)
    kinds = dict(LinearLR=LinearLR, CosineAnnealingLR=CosineAnnealingLR)
    schedulers = []
    for s in cfg.param_scheduler:
        s = dict(s)
        schedulers.append(kinds[s.pop('type')](opt, **s))

    def timm(e: int) -> float:
        if e < 5:
            return 1e-6 + e * (2e-3 - 1e-6) / 5
        if e >= 300:
            return 1e-5
        return 1e-5 + 0.5 * (2e-3 - 1e-5) * (1 + math.cos(math.pi * e / 300))

    lrs = []
    for _ in range(cfg.train_cfg.max_epochs):
        lrs.append(opt.param_groups[0]['lr'])
        opt.step()
        for s in schedulers:
            s.step()
    expected = [timm(e) for e in range(310)]
    assert np.allclose(lrs[:5], expected[:5], rtol=1e-9, atol=0)
    assert max(abs(a - b) for a, b in zip(lrs, expected)) < 0.016 * 2e-3
    assert abs(lrs[-1] - 1e-5) < 1e-7


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
    for name, wd in decay.items():
        key, ndim = authors[name]
        timm_no_decay = ndim <= 1 or key.endswith('.bias')
        assert wd == (0. if timm_no_decay else 0.05), (name, key, wd)
    # Cases where rules could disagree.
    assert decay['backbone.stages.0.blocks.0.layer_scale_1.weight'] == 0.05
    assert decay['backbone.stages.0.blocks.0.layer_scale_1.bias'] == 0.
    assert decay['backbone.stages.0.relative_pos_bias'] == 0.05
    assert decay['backbone.stages.0.blocks.0.token_mixer.local_unit.bias'] == 0.
    assert decay['backbone.norm3.weight'] == decay['head.fc.bias'] == 0.


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


@pytest.mark.parametrize('variant', ['t', 'b'])
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
    assert crop.crop_size == (224, 224)
    path = coco_images[0]
    results = load(dict(img_path=path))
    h, w = results['img'].shape[:2]
    results = resize(results)
    short = RESIZE[variant]
    long = int(short * max(h, w) / min(h, w))
    assert results['img'].shape[:2] == ((short, long) if h < w else
                                        (long, short))
    results = crop(results)
    assert results['img'].shape == (224, 224, 3)
    timm_eval = transforms.Compose([
        transforms.Resize(
            short, interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.CenterCrop(224)
    ])
    with Image.open(path) as img:
        expected = np.asarray(timm_eval(img.convert('RGB')))
    assert np.array_equal(results['img'][..., ::-1], expected)
    assert pack(results)['inputs'].shape == (3, 224, 224)


def test_one_training_iteration_on_real_images(tiny_imagenet, tmp_path):
    """The full recipe (RandAugment, erasing, mixup/cutmix, label smoothing,
    EMA, AdamW with its decay rules) for one iteration of 4 images at 64x64
    through MMEngine's Runner."""
    from mmengine.runner import Runner
    cfg = config('t')
    cfg.work_dir = str(tmp_path / 'work')
    pipeline = cfg.train_dataloader.dataset.pipeline
    assert [t.type for t in pipeline] == [
        'LoadImageFromFile', 'RandomResizedCrop', 'RandomFlip',
        'RandAugment', 'RandomErasing', 'PackInputs']
    pipeline[1].scale = 64
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
    assert math.isclose(ema.ema_model.momentum, 2e-4)


@pytest.fixture(scope='module')
def tiny_config(tiny_imagenet, tmp_path_factory) -> str:
    """The T config testing on 2 of the real images at 64x64 (the real test
    transform is checked above), dumped to a file for the tools."""
    cfg = config('t')
    pipeline = cfg.test_dataloader.dataset.pipeline
    pipeline[1].scale, pipeline[2].crop_size = 72, 64
    cfg.test_dataloader = dict(
        batch_size=2, num_workers=0, persistent_workers=False,
        sampler=dict(type='DefaultSampler', shuffle=False),
        dataset=dict(type='CustomDataset', data_root=tiny_imagenet, indices=2,
                     pipeline=pipeline))
    path = str(tmp_path_factory.mktemp('configs') / 'transxnet_t_tiny.py')
    cfg.dump(path)
    return path


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


def test_image_demo_prints_top5(authors_ckpt, tiny_config, coco_images,
                                tmp_path, capsys, monkeypatch):
    from mmpretrain.datasets.categories import IMAGENET_CATEGORIES
    spec = importlib.util.spec_from_file_location(
        'image_demo', osp.join(ROOT, 'tools/image_demo.py'))
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
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
