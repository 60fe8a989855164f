"""The model zoo: configs/metafile.yml, as mim reads it through
model-index.yml, lists every config with facts derived from the built
configs (parameters, training length, batch, data, weights) and the paper's
results; the README's tables are written from it; the standard-protocol
configs (Cascade Mask R-CNN 3x, UperNet 160k) build, run and train as their
protocols say."""
import glob
import os.path as osp
import re
import sys

import numpy as np
import pytest
import torch
import yaml
from helpers import (ROOT, assert_warmup_then_exact, backbone_facts,
                     build_structure, coco_dataset, linear_drop_path,
                     load_config, load_tool, lr_curve, norm_param_names,
                     step_schedule, train_loop, variant_of, weight_decays)
from paper import (PAPER_GPUS, PAPER_RESULTS, PAPER_VARIANTS,
                   PROTOCOL_CASCADE_3X, PROTOCOL_UPERNET_160K)
from mmengine.config import Config

from benchmark_utils import DEFAULT_SHAPES, dummy_inputs

from transxnet_mm.apis import build_model

METAFILE = osp.join(ROOT, 'configs', 'metafile.yml')
MODEL_INDEX = osp.join(ROOT, 'model-index.yml')
MIM_SITE = osp.join(osp.dirname(osp.dirname(sys.executable)), 'mim-site')
# The metafile's dataset names for the dataset types our configs train on.
DATASET_NAMES = {'CocoDataset': 'COCO', 'ADE20KDataset': 'ADE20K',
                 'ImageNet': 'ImageNet-1k'}
# The metafile's metric names for the paper's results (conftest).
METRICS = {'box_ap': 'box AP', 'mask_ap': 'mask AP', 'miou': 'mIoU',
           'top1': 'Top 1 Accuracy'}


def disk_configs() -> list:
    """Every zoo config on disk (not the bases, not the demos)."""
    return sorted(
        osp.relpath(p, ROOT)
        for p in glob.glob(osp.join(ROOT, 'configs', '*.py')) +
        glob.glob(osp.join(ROOT, 'configs', '*', '*.py'))
        if osp.basename(osp.dirname(p)) not in ('_base_', 'demo'))


ZOO = [osp.splitext(osp.basename(p))[0] for p in disk_configs()]


@pytest.fixture(scope='module')
def metafile() -> dict:
    with open(METAFILE) as f:
        return yaml.safe_load(f)


@pytest.fixture(scope='module')
def models(metafile) -> dict:
    return {m['Name']: m for m in metafile['Models']}


@pytest.fixture(scope='module')
def index():
    """The zoo as mim reads it: model-index.yml and what it imports, each
    model merged with its collection (modelindex's full_model)."""
    modelindex = pytest.importorskip('modelindex')
    return modelindex.load(MODEL_INDEX)


@pytest.fixture(scope='module')
def full_models(index) -> dict:
    return {m.name: m.full_model for m in index.models}


def test_metafile_lists_every_config_once(metafile, models):
    listed = sorted(m['Config'] for m in metafile['Models'])
    assert listed == disk_configs()
    assert len(models) == len(metafile['Models'])
    collections = {c['Name'] for c in metafile['Collections']}
    for name, m in models.items():
        assert name == osp.splitext(osp.basename(m['Config']))[0]
        assert m['In Collection'] in collections


def test_model_index_lists_exactly_the_configs(index, full_models):
    """What mim loads from model-index.yml: one model per config on disk,
    each in a collection the index defines."""
    assert sorted(m.config for m in index.models) == disk_configs()
    assert len(full_models) == len(index.models)
    collections = {c.name for c in index.collections}
    assert {m.in_collection for m in index.models} <= collections


def test_mim_reads_the_zoo(index, full_models, monkeypatch):
    """What `mim search` prints: its table holds every model with the
    metafile's parameters and results."""
    if osp.isdir(osp.join(MIM_SITE, 'mim')):
        monkeypatch.syspath_prepend(MIM_SITE)
    search = pytest.importorskip('mim.commands.search')
    df = search.convert2df(index)
    assert sorted(df.index) == sorted(full_models)
    for name, m in full_models.items():
        meta = m.metadata.data
        assert df.loc[name, 'parameters(M)'] == meta['Parameters (M)']
        for result in m.results or []:
            for metric, value in result.metrics.items():
                column = f'{result.dataset}/{metric}'.lower().replace(' ', '_')
                assert df.loc[name, column] == value, (name, column)


def test_metafile_results_are_the_papers(models):
    """Results and FLOPs as the paper's Tables (conftest: PAPER_RESULTS,
    PAPER_VARIANTS); the configs not in the paper list none."""
    paper = dict(PAPER_RESULTS)
    for v, p in PAPER_VARIANTS.items():
        paper[f'transxnet-{v}_in1k'] = dict(top1=p['top1'], flops=p['flops'])
    for name, m in models.items():
        metrics = {k: v for r in m.get('Results') or []
                   for k, v in r['Metrics'].items()}
        if name not in paper:
            assert not metrics, name
            continue
        expected = {METRICS[k]: v for k, v in paper[name].items()
                    if k in METRICS}
        assert metrics == expected, name
        if 'flops' in paper[name]:
            assert m['Metadata']['FLOPs (G)'] == paper[name]['flops'], name


def test_readme_tables_are_written_from_the_metafile(models):
    tool = load_tool('misc', 'zoo_tables.py')
    with open(osp.join(ROOT, 'README.md')) as f:
        text = f.read()
    tables = tool.render(tool.load_models())
    assert tool.replace_tables(text, tables) == text, \
        'run python tools/misc/zoo_tables.py --update'
    rows = {line.split('|')[1].strip(' `'): line
            for line in text.splitlines() if line.startswith('| `configs/')}
    assert sorted(rows) == disk_configs()  # every model in a table, once
    for m in models.values():
        row = rows[m['Config']]
        assert f"| {m['Metadata']['Parameters (M)']:.2f} |" in row
        for result in m.get('Results') or []:
            for metric, value in result['Metrics'].items():
                assert f'{metric} {value}' in row


def trained_length(cfg, loop) -> tuple:
    """(epochs, iterations) the config trains: epochs over the dataset
    (a RepeatDataset's repeats counted), or iterations."""
    from mmengine.runner import EpochBasedTrainLoop
    if isinstance(loop, EpochBasedTrainLoop):
        return loop.max_epochs * cfg.train_dataloader.dataset.get(
            'times', 1), None
    return None, loop.max_iters


def dataset_type(cfg) -> str:
    dataset = cfg.train_dataloader.dataset
    return dataset.get('dataset', dataset).type


# The authors' trained dense models, release v1.0 (their READMEs' names,
# their spelling), by our config family and variant.
AUTHORS_TRAINED = {
    **{f'retinanet_{v}': f'retinanet_{n}.pth'
       for v, n in (('t', 'tiny'), ('s', 'small'))},
    'retinanet_b': 'reinanet_base.pth',
    **{f'mask_rcnn_{v}': f'maskrcnn_{n}.pth'
       for v, n in (('t', 'tiny'), ('s', 'small'), ('b', 'base'))},
    **{f'fpn_{v}': f'sfpn_transxnet_{n}.pth'
       for v, n in (('t', 'tiny'), ('s', 'small'), ('b', 'base'))},
}


@pytest.mark.parametrize('name', ZOO)
def test_metafile_entry_is_its_config(full_models, name):
    """Each entry against its config, built (on the 'meta' device): the
    parameters counted, the epochs or iterations of the built train loop
    (RepeatDataset repeats counted), the total batch (per GPU x the
    collection's GPUs), the dataset trained on, the architecture, the FLOPs
    input (the size our FLOPs tool counts at by default), and the weights:
    the authors' release of the variant the built backbone is."""
    m = full_models[name]
    meta = m.metadata.data
    cfg = Config.fromfile(osp.join(ROOT, m.config))
    model, scope = build_structure(cfg)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    assert round(params, 2) == meta['Parameters (M)']
    epochs, iters = trained_length(cfg, train_loop(cfg))
    assert (meta.get('Epochs'), meta.get('Iterations')) == (epochs, iters)
    gpus = int(re.match(r'(\d+)x GPUs', meta['Training Resources']).group(1))
    assert gpus == PAPER_GPUS
    assert meta['Batch Size'] == cfg.train_dataloader.batch_size * gpus
    data = DATASET_NAMES[dataset_type(cfg)]
    assert meta['Training Data'] == data
    assert {r.dataset for r in m.results or []} <= {data}
    assert meta['Architecture'] == [type(model.backbone).__name__]
    assert meta['FLOPs input'] == 'x'.join(map(str, DEFAULT_SHAPES[scope]))
    facts = backbone_facts(model.backbone)
    release = f"{m.code['URL']}/releases/download/{m.code['Version']}/"
    imagenet = release + f"transx-{facts['variant']}.pth.tar"
    if scope == 'mmpretrain':  # the authors' classifier is the whole model
        assert m.weights in (imagenet, None)
    else:  # the backbone starts from it; their trained model reproduces
        assert meta['Backbone Weights'] == imagenet
        assert osp.basename(facts['checkpoint']) == osp.basename(imagenet)
        if m.weights:
            assert m.weights == release + AUTHORS_TRAINED[
                m.config.split('/')[-1].split('transxnet')[0] +
                facts['variant']]


@pytest.mark.parametrize('name', ZOO)
def test_auto_scale_lr_base_is_the_trained_batch(full_models, name):
    """--auto-scale-lr scales the lr from the batch the recipe trained."""
    m = full_models[name]
    cfg = Config.fromfile(osp.join(ROOT, m.config))
    assert cfg.get('auto_scale_lr') is not None, 'no auto_scale_lr'
    assert cfg.auto_scale_lr.base_batch_size == \
        m.metadata.data['Batch Size']


@pytest.mark.parametrize('name', [
    'cascade_mask_rcnn_transxnet_t_ms-3x',
    pytest.param('upernet_transxnet_t_8xb2-160k_ade20k-512x512',
                 marks=pytest.mark.slow)])
def test_standard_protocol_models_run(name):
    """T of the extra protocols built on CPU and run (every config's
    parameters: the metafile test above)."""
    cfg = load_config(name)
    if 'cascade' in name:  # 20 proposals, not 1000, for the quick run
        cfg.model.test_cfg.rpn.update(nms_pre=20, max_per_img=20)
    model, scope = build_model(cfg), cfg.default_scope
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


def check_dense_backbone(model, variant: str):
    """The paper's dense backbone: the variant, its detection / segmentation
    drop path, SyncBN, the authors' checkpoint of the variant."""
    facts = backbone_facts(model.backbone)
    assert facts['variant'] == variant
    assert facts['drop_path'] == pytest.approx(linear_drop_path(
        PAPER_VARIANTS[variant]['drop_path_dense'], sum(facts['depths'])))
    assert facts['batch_norms'] == {'SyncBatchNorm'}
    assert osp.basename(facts['checkpoint']) == f'transx-{variant}.pth.tar'
    return facts


def check_protocol_decay(model, cfg, protocol):
    """AdamW at the protocol's lr; no weight decay on the norms and the
    relative position biases (one per stage), the protocol's on the rest."""
    wrapper, decay = weight_decays(model, cfg)
    assert type(wrapper.optimizer).__name__ == 'AdamW'
    assert wrapper.optimizer.defaults['lr'] == protocol['lr']
    pos_bias = {n for n in decay if n.endswith('relative_pos_bias')}
    assert len(pos_bias) == len(model.backbone.stages)
    no_decay = norm_param_names(model) | pos_bias
    assert {n for n, d in decay.items() if d == 0} == no_decay
    assert {d for n, d in decay.items() if n not in no_decay} == \
        {protocol['weight_decay']}
    assert wrapper.clip_grad_kwargs is None


@pytest.mark.parametrize('variant', ['t', 's', 'b'])
def test_cascade_3x_is_the_protocol(variant):
    """mmdet's Cascade Mask R-CNN 3x protocol from the built model,
    optimizer, schedulers and train loop: 36 epochs (12 over a 3x-repeated
    COCO), x0.1 after epochs 27 and 33, 500-iteration warm-up; total batch
    16; every output the model predicts (boxes and masks) evaluated."""
    cfg = load_config(f'cascade_mask_rcnn_transxnet_{variant}_ms-3x')
    protocol = PROTOCOL_CASCADE_3X
    model, _ = build_structure(cfg)
    assert type(model).__name__ == 'CascadeRCNN'
    check_dense_backbone(model, variant)
    check_protocol_decay(model, cfg, protocol)
    times = cfg.train_dataloader.dataset.get('times', 1)
    epoch = 50  # iterations per pass over the stand-in dataset
    points = {0, 1, 250, 499, 500, epoch * protocol['epochs'] - 1}
    for m in protocol['milestones']:
        points |= {m * epoch - 1, m * epoch}
    lrs, loop = lr_curve(cfg, epoch * times, points)
    assert loop.max_epochs * times == protocol['epochs']
    assert_warmup_then_exact(lrs, step_schedule(protocol, epoch),
                             protocol['warmup_iters'])
    assert cfg.train_dataloader.batch_size * PAPER_GPUS == \
        protocol['batch'] == cfg.auto_scale_lr.base_batch_size
    predicts = {'bbox'} | ({'segm'} if model.roi_head.with_mask else set())
    assert predicts == {'bbox', 'segm'}
    for evaluator in (cfg.val_evaluator, cfg.test_evaluator):
        assert set(evaluator.metric) == predicts


def test_cascade_3x_trains_multi_scale(coco_sample):
    """The built train pipeline on a real COCO image: a random short side
    of 640-800 (long side at most 1333), keeping the ratio."""
    from mmengine.registry import init_default_scope
    cfg = load_config('cascade_mask_rcnn_transxnet_t_ms-3x')
    init_default_scope('mmdet')
    dataset = coco_dataset(cfg.train_dataloader.dataset, coco_sample)
    long, (short_min, short_max) = PROTOCOL_CASCADE_3X['scale']
    np.random.seed(0)
    sizes = set()
    for _ in range(8):
        out = dataset[0]
        h, w = out['inputs'].shape[1:]
        oh, ow = out['data_samples'].ori_shape
        assert abs(h / w - oh / ow) < 0.01
        assert max(h, w) <= long and short_min <= min(h, w) <= short_max
        sizes.add(min(h, w))
    assert len(sizes) > 4  # drawn, not fixed


@pytest.mark.parametrize('variant', ['t', 's', 'b'])
def test_upernet_160k_is_the_protocol(variant):
    """mmseg's Swin UperNet 160k protocol from the built model and
    optimizer: UperHead on the four stages, the FCN auxiliary head on the
    third, ADE20K's classes, SyncBN; AdamW lr 6e-5, weight decay 0.01, none
    on norms and position biases; total batch 16. The schedule: below."""
    from mmseg.datasets import ADE20KDataset
    cfg = load_config(
        f'upernet_transxnet_{variant}_8xb2-160k_ade20k-512x512')
    protocol = PROTOCOL_UPERNET_160K
    model, _ = build_structure(cfg)  # model.pretrained would not build
    facts = check_dense_backbone(model, variant)
    head, aux = model.decode_head, model.auxiliary_head
    assert type(head).__name__ == 'UPerHead'
    assert head.in_channels == facts['channels']
    assert aux.in_channels == facts['channels'][2]
    classes = len(ADE20KDataset.METAINFO['classes'])
    assert head.num_classes == aux.num_classes == classes == \
        protocol['num_classes']
    assert {type(m).__name__ for m in model.modules()
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)} == \
        {'SyncBatchNorm'}
    check_protocol_decay(model, cfg, protocol)
    assert cfg.train_dataloader.batch_size * PAPER_GPUS == protocol['batch']


def test_upernet_160k_schedule_is_the_protocol():
    """The lr the built schedulers give over the built 160k-iteration loop:
    linear warm-up from 1e-6 over 1500 iterations, then poly (power 1) to 0
    at the last iteration.
    The S and B configs train with T's optimizer, schedule and loop."""
    protocol = PROTOCOL_UPERNET_160K
    cfg = load_config('upernet_transxnet_t_8xb2-160k_ade20k-512x512')
    total, warmup = protocol['iters'], protocol['warmup_iters']

    def expected(it):
        if it < warmup:
            return protocol['lr'] * (protocol['warmup_ratio'] + (
                1 - protocol['warmup_ratio']) * it / warmup)
        # mmseg 1.x's PolyLR(begin=1500, end=160000): 0 at the last one.
        return protocol['lr'] * (1 - (it - warmup) / (
            total - 1 - warmup)) ** protocol['poly_power']

    points = {0, 1, 750, warmup - 1, warmup, 80000, total - 1}
    lrs, loop = lr_curve(cfg, 1, points)
    assert loop.max_iters == total
    assert_warmup_then_exact(lrs, expected, warmup, rel=1e-6)
    assert lrs[total - 1] == pytest.approx(0, abs=1e-15)
    for v in 'sb':
        other = load_config(
            f'upernet_transxnet_{v}_8xb2-160k_ade20k-512x512')
        for key in ('optim_wrapper', 'param_scheduler', 'train_cfg'):
            assert other[key] == cfg[key], (v, key)


def test_layer_decay_example_scales_lr_by_depth():
    """The example's built optimizer (mmpretrain's layer-decay constructor
    asking TransXNet.get_layer_depth): every parameter's lr is the base lr
    x rate ** (layers - depth - 1), the stem's the smallest and the head's
    the base; the no-decay set is the base recipe's; the backbone starts
    from the authors' T checkpoint."""
    cfg = load_config('transxnet-t_in1k_layer-decay-example')
    base = load_config('transxnet-t_in1k')
    model, _ = build_structure(cfg)
    wrapper, decay = weight_decays(model, cfg)
    rate = cfg.optim_wrapper.paramwise_cfg.layer_decay_rate
    lr = cfg.optim_wrapper.optimizer.lr
    assert 0 < rate < 1
    lrs = {}
    for group in wrapper.optimizer.param_groups:
        depth, layers = model.get_layer_depth(group['param_name'])
        assert group['lr'] == pytest.approx(lr * rate**(layers - depth - 1))
        lrs[group['param_name']] = group['lr']
    stem = 'backbone.downsample_layers.0.conv.weight'
    assert lrs[stem] == min(lrs.values()) < lrs['head.fc.weight'] == \
        pytest.approx(lr)
    assert len(set(lrs.values())) == sum(PAPER_VARIANTS['t']['depths']) + 2
    base_model, _ = build_structure(base)
    _, base_decay = weight_decays(base_model, base)
    assert {n for n, d in decay.items() if d == 0} == \
        {n for n, d in base_decay.items() if d == 0}
    facts = backbone_facts(model.backbone)
    assert osp.basename(facts['checkpoint']) == \
        f"transx-{variant_of(cfg.filename)}.pth.tar"
    assert facts['variant'] == variant_of(cfg.filename)
