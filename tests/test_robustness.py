"""Bad input fails at once with a clear message; interrupted training loses
nothing; distributed runs work on CPU (gloo)."""
import glob
import json
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import pytest
import torch
from helpers import ROOT
from mmengine.config import Config

from transxnet_mm import TransXNet
from transxnet_mm.utils.checks import check_data, check_pretrained
from transxnet_mm.utils.compat import trusted_local_checkpoints
from transxnet_mm.models.utils.ckpt_convert import convert_official

DEMO = osp.join(ROOT, 'configs/demo/retinanet_transxnet_t_coco_sample.py')
PY = sys.executable


@pytest.mark.parametrize('size', [(1, 1), (2, 3), (5, 7), (31, 33), (64, 17)])
@pytest.mark.parametrize('batch', [1, 3])
def test_any_image_size_from_1x1(size, batch):
    model = TransXNet('t').eval()
    with torch.no_grad():
        outs = model(torch.randn(batch, 3, *size))
    assert len(outs) == 4 and all(o.shape[0] == batch for o in outs)
    assert all(torch.isfinite(o).all() for o in outs)


@pytest.mark.parametrize('x,match', [
    (torch.randn(3, 32, 32), r'shape \(B, C, H, W\), got \(3, 32, 32\)'),
    (torch.randn(1, 1, 32, 32), 'built for 3 input channels but got 1.*'
     'in_channels=1'),
    (torch.randn(1, 3, 32, 32).double(), 'input is torch.float64.*weights '
     'are torch.float32'),
    (torch.randn(1, 3, 32, 32, device='meta'), 'input is on meta but '
     'TransXNet is on cpu'),
])
def test_bad_input_is_named(x, match):
    with pytest.raises(ValueError, match=match):
        TransXNet('t').eval()(x)


def test_other_channel_counts_when_configured():
    outs = TransXNet('t', in_channels=1).eval()(torch.randn(2, 1, 32, 32))
    assert outs[0].shape == (2, 48, 8, 8)


def test_training_on_one_image_says_why():
    with pytest.raises(ValueError, match='at least 2 images.*drop_last'):
        TransXNet('t').train()(torch.randn(1, 3, 32, 32))


@pytest.mark.parametrize('kwargs,match', [
    (dict(arch='xl'), r"Unknown TransXNet arch 'xl'; choose one of \['b', "
     r"'base', 's', 'small', 't', 'tiny'\]"),
    (dict(out_indices=(1, 4)), 'from 0 to 3'),
    (dict(frozen_stages=5), 'from -1 .* to 4'),
    (dict(arch=dict(depths=[1, 1, 1, 1])), 'lacks'),
])
def test_bad_config_values_list_the_valid_ones(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TransXNet(**kwargs)


def test_missing_dataset_root_names_key_and_env(tmp_path):
    cfg = Config.fromfile(osp.join(ROOT, 'configs/retinanet_transxnet_t.py'))
    cfg.train_dataloader.dataset.data_root = str(tmp_path / 'coco') + '/'
    with pytest.raises(FileNotFoundError, match='train_dataloader.dataset.'
                       'data_root: .*coco/ does not exist.*COCO_ROOT'):
        check_data(cfg, ['train_dataloader'])


def test_missing_pretrained_names_config_key():
    cfg = Config.fromfile(osp.join(ROOT, 'configs/mask_rcnn_transxnet_s.py'))
    with pytest.raises(FileNotFoundError, match=r'model\.backbone\.init_cfg'
                       r'\.checkpoint: checkpoints/transx-s\.pth\.tar'):
        check_pretrained(cfg)


def test_truncated_or_foreign_checkpoint_in_tools(tmp_path):
    from mmengine.runner.checkpoint import _load_checkpoint
    path = tmp_path / 'epoch_1.pth'
    torch.save({'state_dict': TransXNet('t').state_dict()}, path)
    path.write_bytes(path.read_bytes()[:1000])
    text = tmp_path / 'notes.pth'
    text.write_text('not a checkpoint')
    with trusted_local_checkpoints():
        for p in (path, text):
            with pytest.raises(ValueError, match='could not be read as a '
                               'checkpoint'):
                _load_checkpoint(str(p), map_location='cpu')


def test_user_torch_load_keeps_weights_only_default(tmp_path):
    """Our tools' trusted loading is scoped: a plain torch.load afterwards
    still refuses pickled objects."""
    from mmengine.logging import HistoryBuffer
    path = tmp_path / 'x.pth'
    torch.save({'h': HistoryBuffer()}, path)
    with trusted_local_checkpoints():
        pass
    with pytest.raises(Exception, match='Weights only load failed'):
        torch.load(path)


def test_bf16_autocast_inference_close_to_fp32(official_sd):
    model = TransXNet('t').eval()
    model.load_state_dict(convert_official(official_sd('t'))[0], strict=False)
    x = torch.randn(2, 3, 160, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model(x)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            low = model(x)
    for a, b in zip(low, ref):
        assert ((a.float() - b).abs().max() / b.abs().max()) < 0.05


@pytest.mark.slow
def test_amp_flag_on_cpu_says_it_needs_a_gpu():
    if torch.cuda.is_available():
        pytest.skip('has a GPU')
    out = subprocess.run([PY, osp.join(ROOT, 'tools/train.py'), DEMO,
                          '--amp'], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode != 0 and '--amp' in out.stderr.splitlines()[-1]


TINY = f"""
_base_ = '{DEMO}'
model = dict(backbone=dict(arch=dict(
    _delete_=True,
    depths=[1, 1, 1, 1], channels=[48, 96, 224, 448], kernel_sizes=[7] * 4,
    num_groups=[2] * 4, sr_ratios=[8, 4, 2, 1], num_heads=[1, 2, 4, 8],
    mlp_ratios=[4] * 4, layer_scale_init=1e-5)))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(256, 160), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
# One fresh worker per epoch, seeded by MMEngine: the augmentation's random
# stream is the same whether or not the run was resumed.
train_dataloader = dict(num_workers=1, persistent_workers=False,
                        dataset=dict(pipeline=train_pipeline, indices=4))
train_cfg = dict(max_epochs=2, val_interval=100)
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval=1, max_keep_ckpts=-1))
randomness = dict(seed=0, deterministic=True)
"""


def _losses(work_dir):
    losses = {}
    for f in glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')):
        with open(f) as fh:
            for line in fh:
                rec = json.loads(line)
                if 'loss' in rec:
                    losses[rec['step']] = rec['loss']
    return losses


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_weights_and_losses(coco_sample,
                                                           tmp_path):
    cfg = tmp_path / 'tiny.py'
    cfg.write_text(TINY)
    train = [PY, osp.join(ROOT, 'tools/train.py'), str(cfg), '--work-dir']
    full, cut = str(tmp_path / 'full'), str(tmp_path / 'cut')
    subprocess.run(train + [full], check=True, capture_output=True, cwd=ROOT)

    proc = subprocess.Popen(train + [cut], cwd=ROOT,
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    marker = osp.join(cut, 'last_checkpoint')
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if osp.exists(marker) and open(marker).read().endswith('epoch_1.pth'):
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not osp.exists(osp.join(cut, 'epoch_2.pth'))
    out = subprocess.run(train + [cut, '--resume'], capture_output=True,
                         text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    assert 'Resumed' in out.stdout + out.stderr or \
        'resumed' in out.stdout + out.stderr

    def weights(d):
        with trusted_local_checkpoints():
            from mmengine.runner.checkpoint import _load_checkpoint
            return _load_checkpoint(osp.join(d, 'epoch_2.pth'))['state_dict']

    a, b = weights(full), weights(cut)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    la, lb = _losses(full), _losses(cut)
    assert len(la) == 4 and set(la) <= set(lb)
    assert all(la[s] == lb[s] for s in la)


def _launch(script, *args):
    """Run a tools/dist_*.sh launcher with 2 processes; its stdout + stderr.

    On failure both ends are shown: a rank's abort is in stderr, how far it
    got in stdout."""
    out = subprocess.run(['bash', osp.join(ROOT, 'tools', script), *args],
                         env=dict(os.environ, PYTHON=PY, PORT='29517'),
                         cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, (f'stdout: ...{out.stdout[-2000:]}\n'
                                 f'stderr: ...{out.stderr[-2000:]}')
    return out.stdout + out.stderr


@pytest.mark.slow
def test_two_process_cpu_training_and_testing(coco_sample, tmp_path):
    work = str(tmp_path / 'dist')
    # as the paper configs: SyncBN, which gloo on CPU replaces by BN
    opts = ['--cfg-options', 'model.test_cfg.score_thr=0.0',
            'model.backbone.norm_cfg.type=SyncBN']
    log = _launch('dist_train.sh', DEMO, '2', '--work-dir', work, *opts,
                  'train_cfg.max_epochs=1', 'train_cfg.val_interval=1',
                  'default_hooks.checkpoint.interval=1')
    assert 'Distributed on CPU (gloo), 2 processes; 1 SyncBN' in log
    assert 'coco/bbox_mAP' in log
    # the processes exit early (utils.compat.cpu_distributed): nothing lost
    scalars = glob.glob(osp.join(work, '*', 'vis_data', 'scalars.json'))
    assert 'coco/bbox_mAP' in open(scalars[0]).read().splitlines()[-1]
    log = _launch('dist_test.sh', DEMO, osp.join(work, 'epoch_1.pth'), '2',
                  '--work-dir', str(tmp_path / 'test'), *opts)
    assert 'coco/bbox_mAP' in log


BRIEF_CONFIG = 'configs/retinanet_transxnet_s.py'  # README / the package brief


def test_brief_train_command_names_the_missing_data(tmp_path):
    """``python tools/train.py configs/retinanet_transxnet_s.py`` without
    COCO says where the data must go."""
    env = dict(os.environ, COCO_ROOT=str(tmp_path / 'coco') + '/')
    out = subprocess.run([PY, 'tools/train.py', BRIEF_CONFIG, '--work-dir',
                          str(tmp_path / 'work')], capture_output=True,
                         text=True, cwd=ROOT, env=env)
    assert out.returncode != 0
    assert f'{tmp_path}/coco/ does not exist' in out.stderr
    assert 'COCO_ROOT' in out.stderr


@pytest.mark.slow
def test_brief_train_command_starts_training(tmp_path, coco_sample):
    """With COCO at COCO_ROOT (here the real sample, laid out as COCO) the
    same command builds the runner and enters the training loop; it is
    stopped there (an iteration of TransXNet-S at 1333x800 is minutes on a
    CPU)."""
    root = tmp_path / 'coco'
    (root / 'annotations').mkdir(parents=True)
    for split in ('train2017', 'val2017'):
        os.symlink(osp.join(coco_sample, 'val2017'), root / split)
        os.symlink(osp.join(coco_sample, 'annotations',
                            'instances_val2017_sample.json'),
                   root / 'annotations' / f'instances_{split}.json')
    env = dict(os.environ, COCO_ROOT=str(root) + '/')
    proc = subprocess.Popen(
        [PY, 'tools/train.py', BRIEF_CONFIG, '--work-dir',
         str(tmp_path / 'work'), '--cfg-options',
         'model.backbone.init_cfg=None'], cwd=ROOT, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if 'Checkpoints will be saved to' in line:
                break
    finally:
        proc.kill()
        proc.wait()
    assert 'Checkpoints will be saved to' in lines[-1], ''.join(lines[-30:])
