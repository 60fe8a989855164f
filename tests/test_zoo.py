"""The model zoo: configs/metafile.yml lists every config with facts that
match the configs and the models, mim reads it, the README's tables are
written from it; the standard-protocol configs (Cascade Mask R-CNN 3x,
UperNet 160k) build."""
import glob
import importlib.util
import os.path as osp
import re

import pytest
import torch
import yaml
from mmengine.config import Config

from transxnet_mm.analysis import build_model, dummy_inputs

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
METAFILE = osp.join(ROOT, 'configs', 'metafile.yml')
CHANNELS = {'t': [48, 96, 224, 448], 's': [64, 128, 320, 512],
            'b': [76, 152, 336, 672]}
DROP_PATH = {'t': 0.1, 's': 0.2, 'b': 0.3}


def load_tool():
    spec = importlib.util.spec_from_file_location(
        'zoo_tables', osp.join(ROOT, 'tools/misc/zoo_tables.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


@pytest.fixture(scope='module')
def metafile() -> dict:
    with open(METAFILE) as f:
        return yaml.safe_load(f)


@pytest.fixture(scope='module')
def models(metafile) -> dict:
    return {m['Name']: m for m in metafile['Models']}


def test_metafile_lists_every_config_once(metafile, models):
    configs = sorted(
        osp.relpath(p, ROOT)
        for p in glob.glob(osp.join(ROOT, 'configs', '*', '*.py'))
        if osp.basename(osp.dirname(p)) not in ('_base_', 'demo'))
    listed = sorted(m['Config'] for m in metafile['Models'])
    assert listed == configs
    assert len(models) == len(metafile['Models'])
    collections = {c['Name'] for c in metafile['Collections']}
    for name, m in models.items():
        assert name == osp.splitext(osp.basename(m['Config']))[0]
        assert m['In Collection'] in collections
        meta = m['Metadata']
        assert meta['Parameters (M)'] > 0 and meta['FLOPs (G)'] > 0
        url = m.get('Weights') or meta['Backbone Weights']
        variant = re.search(r'transxnet_([tsb])(_|$)', name).group(1)
        assert url == ('https://github.com/LMMMEng/TransXNet/releases/'
                       f'download/v1.0/transx-{variant}.pth.tar')


def test_model_index_imports_the_metafile():
    with open(osp.join(ROOT, 'model-index.yml')) as f:
        assert yaml.safe_load(f) == {'Import': ['configs/metafile.yml']}


def test_mim_reads_the_zoo():
    """What `mim search` does once it has found model-index.yml."""
    modelindex = pytest.importorskip('modelindex')
    index = modelindex.load(osp.join(ROOT, 'model-index.yml'))
    names = {m.name for m in index.models}
    assert 'retinanet_transxnet_t' in names and len(names) == 19
    search = pytest.importorskip('mim.commands.search')
    df = search.convert2df(index)
    assert df.loc['mask_rcnn_transxnet_b', 'coco/mask_ap'] == 43.8
    assert df.loc['fpn_transxnet_s_ade20k', 'ade20k/miou'] == 48.5
    assert df.loc['retinanet_transxnet_s', 'parameters(M)'] == 36.60


@pytest.mark.parametrize('variant', ['t', 's', 'b'])
def test_paper_results_in_the_metafile(models, variant):
    i = 'tsb'.index(variant)
    top1 = models[f'transxnet_{variant}_in1k']['Results'][0]['Metrics']
    assert top1['Top 1 Accuracy'] == [81.6, 83.8, 84.6][i]
    retina = models[f'retinanet_transxnet_{variant}']
    assert retina['Results'][0]['Metrics']['box AP'] == [43.1, 46.4, 47.6][i]
    assert retina['Metadata']['FLOPs (G)'] == [187, 242, 317][i]
    mask = models[f'mask_rcnn_transxnet_{variant}']['Results']
    assert (mask[0]['Metrics']['box AP'], mask[1]['Metrics']['mask AP']) == \
        ([44.5, 47.7, 48.8][i], [40.6, 43.1, 43.8][i])
    fpn = models[f'fpn_transxnet_{variant}_ade20k']['Results'][0]
    assert fpn['Metrics']['mIoU'] == [45.5, 48.5, 49.9][i]


def test_readme_tables_are_written_from_the_metafile():
    tool = load_tool()
    with open(osp.join(ROOT, 'README.md')) as f:
        text = f.read()
    tables = tool.render(tool.load_models())
    assert tool.replace_tables(text, tables) == text, \
        'run python tools/misc/zoo_tables.py --update'
    assert '| `configs/mask_rcnn/mask_rcnn_transxnet_t.py` | box AP 44.5, mask AP ' \
        '40.6 | 32.50 |' in text


@pytest.mark.parametrize('name', [
    'retinanet_transxnet_t', 'mask_rcnn_transxnet_t',
    'fpn_transxnet_t_ade20k', 'transxnet_t_in1k',
    'cascade_mask_rcnn_transxnet_t_ms-3x',
    'upernet_transxnet_t_8xb2-160k_ade20k-512x512'])
def test_metafile_params_are_the_models(models, name):
    """T of every family built on CPU (S and B: the paper configs' tests
    and the config checks below)."""
    cfg = Config.fromfile(osp.join(ROOT, models[name]['Config']))
    if 'cascade' in name:  # 20 proposals, not 1000, for the quick run
        cfg.model.test_cfg.rpn.update(nms_pre=20, max_per_img=20)
    model, scope = build_model(cfg)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    assert round(params, 2) == models[name]['Metadata']['Parameters (M)']
    if 'cascade' in name or 'upernet' in name:  # they also run
        with torch.no_grad():
            inputs, kwargs = dummy_inputs(scope, (96, 128))
            outs = model(inputs, **kwargs)
        flat = list(tensors(outs))
        assert flat and all(torch.isfinite(t).all() for t in flat)


def tensors(out):
    """The tensors of a model's nested tuple / list output."""
    if isinstance(out, torch.Tensor):
        yield out
    else:
        for o in out:
            yield from tensors(o)


@pytest.mark.parametrize('variant', ['t', 's', 'b'])
def test_cascade_mask_rcnn_3x_settings(variant):
    cfg = Config.fromfile(osp.join(
        ROOT, f'configs/cascade_rcnn/cascade_mask_rcnn_transxnet_{variant}_ms-3x.py'))
    bb = cfg.model.backbone
    assert (bb.type, bb.arch, bb.out_indices, bb.drop_path_rate) == \
        ('TransXNet', variant, (0, 1, 2, 3), DROP_PATH[variant])
    assert bb.init_cfg.checkpoint == f'checkpoints/transx-{variant}.pth.tar'
    assert cfg.model.type == 'CascadeRCNN'
    assert cfg.model.neck.in_channels == CHANNELS[variant]
    train = cfg.train_dataloader
    assert (train.dataset.type, train.dataset.times) == ('RepeatDataset', 3)
    assert train.dataset.dataset.data_root == 'data/coco/'
    resize = train.dataset.dataset.pipeline[2]
    assert (resize.type, resize.scale) == ('RandomResize',
                                           [(1333, 640), (1333, 800)])
    assert cfg.train_cfg.max_epochs == 12  # x3 repeats = 36 epochs
    opt = cfg.optim_wrapper
    assert opt.optimizer == dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999),
                                 weight_decay=0.05)
    assert opt.paramwise_cfg.norm_decay_mult == 0.
    assert cfg.val_evaluator.metric == ['bbox', 'segm']


@pytest.mark.parametrize('variant', ['t', 's', 'b'])
def test_upernet_160k_settings(variant):
    cfg = Config.fromfile(osp.join(
        ROOT,
        f'configs/upernet/upernet_transxnet_{variant}_8xb2-160k_ade20k-512x512.py'))
    model = cfg.model
    assert model.backbone.arch == variant and model.pretrained is None
    assert model.backbone.drop_path_rate == DROP_PATH[variant]
    assert model.decode_head.type == 'UPerHead'
    assert model.decode_head.in_channels == CHANNELS[variant]
    assert model.auxiliary_head.in_channels == CHANNELS[variant][2]
    assert model.decode_head.num_classes == 150
    assert cfg.train_cfg.max_iters == 160000
    assert cfg.train_dataloader.batch_size == 2  # x 8 GPUs
    assert cfg.train_dataloader.dataset.data_root == \
        'data/ade/ADEChallengeData2016'
    opt = cfg.optim_wrapper
    assert opt.optimizer == dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999),
                                 weight_decay=0.01)
    assert opt.paramwise_cfg == dict(
        norm_decay_mult=0.,
        custom_keys={'relative_pos_bias': dict(decay_mult=0.)})
    assert [s.type for s in cfg.param_scheduler] == ['LinearLR', 'PolyLR']


def test_no_decay_keys_match_parameters():
    """The Cascade / UperNet no-decay key names a real parameter."""
    model, _ = build_model(Config.fromfile(osp.join(
        ROOT, 'configs/upernet/upernet_transxnet_t_8xb2-160k_ade20k-512x512.py')))
    names = [n for n, _ in model.named_parameters()]
    assert sum('relative_pos_bias' in n for n in names) == 4


def test_layer_decay_example_config():
    """The example builds mmpretrain's layer-decay optimizer: parameters
    deeper in the backbone get larger learning rates."""
    cfg = Config.fromfile(osp.join(
        ROOT, 'configs/transxnet/transxnet_t_in1k_layer-decay-example.py'))
    opt = cfg.optim_wrapper
    assert opt.constructor == 'LearningRateDecayOptimWrapperConstructor'
    assert opt.paramwise_cfg.layer_decay_rate == 0.8
    assert cfg.model.backbone.init_cfg.checkpoint == \
        'checkpoints/transx-t.pth.tar'
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope
    model, _ = build_model(cfg)
    init_default_scope('mmpretrain')
    wrapper = build_optim_wrapper(model, opt)
    lr = {g['param_name']: g['lr'] for g in wrapper.optimizer.param_groups}
    stem = next(iter(lr))  # the first parameter: the stem's convolution
    assert stem.startswith('backbone.')
    assert lr['head.fc.weight'] == pytest.approx(1e-4)
    assert lr[stem] < 1e-4
