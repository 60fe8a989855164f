"""ERF and Grad-CAM tools (transxnet_mm/visualization/, tools/analysis_tools/
visualize_erf.py and visualize_cam.py): real COCO sample images, random
weights, small sizes."""
import os.path as osp

import numpy as np
import pytest
import torch
from helpers import config_file, load_tool, run_tool
from mmengine.config import Config

from transxnet_mm import TransXNet
from transxnet_mm.models.backbones.transxnet import DMixer, TransXNetStage
from transxnet_mm.models.layers import IDConv, OSRA
from transxnet_mm.ops import use_kernels
from transxnet_mm.apis import build_model
from transxnet_mm.models.utils.ckpt_convert import CheckpointMismatch
from transxnet_mm.visualization import (erf_maps, erf_score, grad_cam,
                                        input_normalisation, list_images,
                                        load_image, resolve_layers, to_input)

CLS_CONFIG = config_file('transxnet-t_in1k.py')
DET_CONFIG = config_file('retinanet_transxnet_t.py')


def _tool(name: str):
    """A tool script imported by path (its ``main(argv)``)."""
    return load_tool('analysis_tools', f'{name}.py')


@pytest.fixture(scope='module')
def classifier():
    return build_model(Config.fromfile(CLS_CONFIG))


@pytest.fixture(scope='module')
def images(coco_sample):
    return list_images(osp.join(coco_sample, 'val2017'), 2)


def _inputs(model, paths, shape):
    mean, std, rgb = input_normalisation(model)
    return [to_input(load_image(p, shape), mean, std, rgb) for p in paths]


def _read_png(path):
    from PIL import Image
    with Image.open(path) as img:
        assert img.format == 'PNG'
        return np.asarray(img)


def test_short_names_resolve_to_the_paper_modules(classifier):
    last = len(classifier.backbone.stages[3].blocks) - 1
    assert last == TransXNet.arch_settings['t']['depths'][3] - 1
    mixer = f'backbone.stages.3.blocks.{last}.token_mixer'
    layers = {layer.name: layer for layer in resolve_layers(
        classifier, ['stage1', 'stage4', 'dmixer.local', 'dmixer.global',
                     'dmixer.fused'])}
    assert layers['dmixer.local'].path == mixer + '.local_unit'
    assert layers['dmixer.global'].path == mixer + '.global_unit'
    assert layers['dmixer.fused'].path == mixer
    assert isinstance(layers['dmixer.local'].module, IDConv)
    assert isinstance(layers['dmixer.global'].module, OSRA)
    assert isinstance(layers['dmixer.fused'].module, DMixer)
    assert layers['stage1'].module is classifier.backbone.stages[0]
    assert isinstance(layers['stage4'].module, TransXNetStage)
    # any module name, with or without the backbone prefix
    a, b = resolve_layers(classifier, ['stages.2.blocks.0',
                                       'backbone.stages.2.blocks.0'])
    assert a.module is b.module is classifier.backbone.stages[2].blocks[0]


def test_bad_layer_name_lists_accepted_names(classifier):
    with pytest.raises(ValueError) as e:
        resolve_layers(classifier, ['stage5'])
    msg = str(e.value)
    for name in ('stage1', 'stage4', 'dmixer.local', 'dmixer.global',
                 'dmixer.fused'):
        assert name in msg
    assert 'Close module names' in msg


def test_tool_bad_layer_and_missing_images_exit_clearly(images, tmp_path):
    erf = _tool('visualize_erf')
    out = str(tmp_path / 'erf.png')
    folder = osp.dirname(images[0])
    with pytest.raises(SystemExit) as e:
        erf.main([CLS_CONFIG, '--images', folder, '--num-images', '1',
                  '--layer', 'dmixer.loc', '--out', out])
    assert 'Unknown layer' in str(e.value) and 'dmixer.local' in str(e.value)
    with pytest.raises(SystemExit) as e:
        erf.main([CLS_CONFIG, '--images', str(tmp_path / 'nowhere'),
                  '--out', out])
    assert 'does not exist' in str(e.value)
    (tmp_path / 'empty').mkdir()
    with pytest.raises(SystemExit) as e:
        erf.main([CLS_CONFIG, '--images', str(tmp_path / 'empty'),
                  '--out', out])
    assert 'No image' in str(e.value)
    with pytest.raises(SystemExit) as e:
        erf.main([CLS_CONFIG, str(tmp_path / 'missing.pth'), '--images',
                  folder, '--out', out])
    assert 'does not exist' in str(e.value)
    assert not osp.exists(out)


def test_erf_is_finite_central_and_grows_with_depth(classifier, images):
    layers = resolve_layers(classifier, ['stage1', 'stage4'])
    maps = erf_maps(classifier.backbone, layers,
                    _inputs(classifier, images, (128, 128)))
    for name, erf in maps.items():
        assert erf.shape == (128, 128)
        assert np.isfinite(erf).all() and (erf >= 0).all() and erf.max() > 0
        y, x = np.unravel_index(erf.argmax(), erf.shape)
        assert 128 // 3 <= y < 2 * 128 // 3 and 128 // 3 <= x < 2 * 128 // 3
    stage1, stage4 = (erf_score(maps[n]) for n in ('stage1', 'stage4'))
    assert all(b >= a for a, b in zip(stage1, stage4)), (stage1, stage4)
    assert stage4[2] > stage1[2]


def test_erf_score():
    delta = np.zeros((9, 9))
    delta[4, 4] = 5.
    assert erf_score(delta) == [1 / 81] * 4
    uniform = np.ones((10, 10))
    # squares of side 1, 3, 5, 7, 9 around pixel (5, 5): 49% < 50% < 81%
    assert erf_score(uniform, [0.2, 0.5, 0.99]) == [25 / 100, 81 / 100, 1.0]


@pytest.mark.slow
def test_erf_with_kernels_equals_plain_pytorch(official_sd, images,
                                               tmp_path):
    """Authors'-format weights (every branch counts; converted on the fly):
    the ERF through our CPU kernels equals the plain PyTorch one."""
    path = str(tmp_path / 'transx-t.pth.tar')
    torch.save({'state_dict': official_sd('t')}, path)
    model = build_model(Config.fromfile(CLS_CONFIG), path)
    assert torch.equal(model.backbone.stages[0].relative_pos_bias,
                       official_sd('t')['relative_pos_enc.0'])
    assert torch.equal(model.head.fc.weight,
                       official_sd('t')['classifier.2.weight'].flatten(1))
    layers = resolve_layers(model, ['stage4', 'dmixer.global', 'stage2'])
    x = _inputs(model, images[:1], (96, 96))
    fast = erf_maps(model.backbone, layers, x)
    with use_kernels(False):
        plain = erf_maps(model.backbone, layers, x)
    for name in fast:
        assert fast[name].max() > 0
        np.testing.assert_allclose(fast[name], plain[name],
                                   atol=1e-5 * plain[name].max(), rtol=1e-4)


def test_our_checkpoint_loads_and_a_foreign_one_is_refused(classifier,
                                                           tmp_path):
    state = classifier.state_dict()
    state['backbone.stages.1.relative_pos_bias'] = torch.full_like(
        state['backbone.stages.1.relative_pos_bias'], 0.25)
    ours = str(tmp_path / 'epoch_1.pth')
    torch.save({'state_dict': state, 'meta': {}}, ours)
    model = build_model(Config.fromfile(CLS_CONFIG), ours)
    assert (model.backbone.stages[1].relative_pos_bias == 0.25).all()
    del state['backbone.stages.0.blocks.0.pos_embed.weight']
    torch.save({'state_dict': state}, ours)
    with pytest.raises(CheckpointMismatch, match='lacks 1 of the'):
        build_model(Config.fromfile(CLS_CONFIG), ours)


def test_grad_cam_maps(classifier, images):
    layers = resolve_layers(classifier, ['stage4', 'dmixer.global'])
    x = _inputs(classifier, images[:1], (128, 96))[0]
    cams, k, prob = grad_cam(classifier, layers, x)
    with torch.no_grad():
        assert k == int(classifier(x, mode='tensor').argmax())
    assert 0 < prob <= 1
    for cam in cams.values():
        assert cam.shape == (128, 96)
        assert np.isfinite(cam).all() and cam.min() >= 0 and cam.max() <= 1
    _, k, _ = grad_cam(classifier, layers, x, target_class=7)
    assert k == 7
    with pytest.raises(ValueError, match='not a class'):
        grad_cam(classifier, layers, x, target_class=1000)


def test_cam_needs_a_classifier_config(images, tmp_path):
    with pytest.raises(SystemExit, match='classification config'):
        _tool('visualize_cam').main([DET_CONFIG, images[0], '--out',
                                     str(tmp_path / 'cam.png')])


def test_erf_of_a_detector_backbone(images, tmp_path):
    out = tmp_path / 'erf_det.png'
    erf = _tool('visualize_erf')
    with pytest.raises(SystemExit, match='outside the backbone'):
        erf.main([DET_CONFIG, '--images', osp.dirname(images[0]),
                  '--layer', 'neck.fpn_convs.0', '--out', str(out)])
    maps = erf.main([
        DET_CONFIG, '--images', osp.dirname(images[0]), '--num-images', '1',
        '--layer', 'stage2', 'dmixer.fused', '--shape', '96', '128',
        '--out', str(out)])
    assert set(maps) == {'stage2', 'dmixer.fused'}
    assert maps['stage2'].shape == (96, 128)
    assert _read_png(out).ndim == 3


@pytest.mark.slow
def test_erf_tool_cli(images, tmp_path):
    out, npy = tmp_path / 'erf.png', tmp_path / 'erf.npy'
    log = run_tool([
        'tools/analysis_tools/visualize_erf.py', CLS_CONFIG,
        '--images', osp.dirname(images[0]), '--num-images', '2', '--layer',
        'stage4', 'dmixer.local', 'dmixer.global', '--shape', '128', '128',
        '--out', str(out), '--save-npy', str(npy)])
    assert 'random weights' in log
    assert 'dmixer.local' in log and '99%' in log
    png = _read_png(out)
    assert png.ndim == 3 and png.shape[1] > 2 * png.shape[0]  # 3 panels
    maps = np.load(npy)
    assert maps.shape == (3, 128, 128) and np.isfinite(maps).all()


@pytest.mark.slow
def test_cam_tool_cli(images, tmp_path):
    out = tmp_path / 'cam.png'
    log = run_tool([
        'tools/analysis_tools/visualize_cam.py', CLS_CONFIG,
        images[0], '--target-layers', 'stage4', 'dmixer.global', '--shape',
        '128', '128', '--out', str(out)])
    assert 'random weights' in log and 'Grad-CAM of class' in log
    png = _read_png(out)
    assert png.ndim == 3 and png.shape[1] > 2 * png.shape[0]  # 3 panels
