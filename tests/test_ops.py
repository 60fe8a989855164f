"""The kernel layer (transxnet_mm.ops) and the paths a user takes around it:
the switch, forward hooks at inference, double backward, autocast, layer
depths for learning-rate decay, and the module layout."""
import ast
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from helpers import ROOT, rel_err
from verify_cuda import SMALL, small_model
from torch import nn

from transxnet_mm import TransXNet
from transxnet_mm.ops import kernels_enabled, use_kernels


def _model(train=False):
    """TransXNet-T with fewer blocks, every part counting (the GPU check's
    model, tools/analysis_tools/verify_cuda.py)."""
    return small_model().train(train)


def test_use_kernels_switch_restores_and_gives_same_outputs():
    model = _model()
    x = torch.randn(2, 3, 97, 131)
    assert kernels_enabled()
    with torch.no_grad():
        on = model(x)
        with use_kernels(False):
            assert not kernels_enabled()
            off = model(x)
    assert kernels_enabled()
    for a, b in zip(on, off):
        assert rel_err(a, b) < 1e-5


def test_kernels_switch_by_name():
    """One kernel off leaves the others as they were; an unknown name is
    refused with the list of kernels."""
    from transxnet_mm.ops import KERNELS
    with use_kernels(False, 'depthwise'):
        assert not kernels_enabled('depthwise')
        assert all(kernels_enabled(n) for n in KERNELS if n != 'depthwise')
        with use_kernels(True):
            assert kernels_enabled('depthwise')
        assert not kernels_enabled('depthwise')
    assert all(kernels_enabled(n) for n in KERNELS)
    with pytest.raises(ValueError, match="unknown kernel.*'depthwise'"):
        with use_kernels(False, 'pointwise'):
            pass
    with pytest.raises(ValueError, match='unknown kernel'):
        kernels_enabled('gelu')


def test_one_type_test_for_the_norms():
    """The norms a kernel may stand in for: BN and SyncBN reverted in one
    process; nn.SyncBatchNorm as BatchNorm2d only in eval mode, and in
    training for the training kernels only outside a process group of more
    than one (inside, PyTorch's SyncBatchNorm runs); never a subclass or a
    norm without running statistics."""
    from mmcv.cnn import build_norm_layer
    from mmengine.model.utils import _BatchNormXd

    from transxnet_mm.ops.rules import plain_batch_norm, training_batch_norm
    config_sync_bn = build_norm_layer(dict(type='SyncBN'), 4)[1]
    assert type(config_sync_bn) is not nn.SyncBatchNorm  # MMEngine's

    class MyBN(nn.BatchNorm2d):
        pass

    assert plain_batch_norm(nn.BatchNorm2d(4))
    assert plain_batch_norm(_BatchNormXd(4))
    assert not plain_batch_norm(nn.SyncBatchNorm(4).train())
    assert plain_batch_norm(nn.SyncBatchNorm(4).eval())
    assert plain_batch_norm(config_sync_bn.eval())
    assert not plain_batch_norm(config_sync_bn.train())
    assert not plain_batch_norm(MyBN(4))
    assert not plain_batch_norm(nn.BatchNorm2d(4, track_running_stats=False))
    assert not plain_batch_norm(nn.BatchNorm2d(4, affine=False))
    for bn in (nn.BatchNorm2d(4), _BatchNormXd(4), nn.SyncBatchNorm(4),
               config_sync_bn):
        assert training_batch_norm(bn.train())
        assert not training_batch_norm(bn.eval())
    assert not training_batch_norm(MyBN(4))
    assert not training_batch_norm(nn.SyncBatchNorm(4, affine=False))


def test_no_kernel_runs_where_it_has_not_been_verified():
    """No GPU has run the kernels: CUDA gets PyTorch's own ops, and a
    device outside a kernel's row (here 'meta') gets the plain op."""
    from transxnet_mm.ops import applies
    from transxnet_mm.ops.rules import KERNELS
    assert all(rule.devices == {'cpu'} for rule in KERNELS.values())
    x = torch.empty(1, 4, 8, 8, device='meta')
    with torch.no_grad():
        assert not any(applies(name, x) for name in KERNELS)


def test_rules_decide_where_each_kernel_runs():
    """The table's devices and modes, and tracing, autocast and hooks."""
    from transxnet_mm.ops import applies
    x = torch.randn(1, 4, 8, 8)
    w = torch.randn(4, requires_grad=True)
    with torch.no_grad():
        assert applies('inplace', x) and not applies('gelu_bn', x, x, w)
    assert applies('gelu_bn', x, x, w) and not applies('inplace', x)
    assert not applies('gelu_bn', x)  # nothing records a gradient
    assert applies('bias_resize', x)
    with use_kernels(False, 'bias_resize'):
        assert not applies('bias_resize', x)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert not applies('bias_resize', x)
    from transxnet_mm.ops import lean
    block = nn.Sequential(nn.Conv2d(4, 4, 1), nn.Sequential(nn.GELU()))
    assert lean(block, x)
    with use_kernels(False):
        assert not lean(block, x)  # PyTorch's modules as they are
    handle = block[1][0].register_forward_hook(lambda *a: None)
    assert not lean(block, x)  # a hook anywhere inside: every layer called
    handle.remove()
    handle = nn.modules.module.register_module_forward_hook(lambda *a: None)
    assert not lean(block, x)
    handle.remove()
    traced = []
    torch.jit.trace(lambda t: traced.append(applies('bias_resize', t)) or t,
                    x, check_trace=False)
    assert traced == [False]


def _hook_counts(model, x, grad: bool):
    counts = {}

    def hook(module, args, out):
        counts[module] = counts.get(module, 0) + 1

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    with torch.set_grad_enabled(grad):
        out = model(x)
    for h in handles:
        h.remove()
    return counts, out


def test_every_forward_hook_runs_at_inference():
    """Hooks (Grad-CAM, feature visualisation, FLOP counters) see every
    module call at inference, as with gradients, and the outputs stay the
    same; the hooked MS-FFN convs see their input unchanged."""
    model = _model()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        plain = model(x)
    infer, hooked_out = _hook_counts(model, x, grad=False)
    train, _ = _hook_counts(model, x, grad=True)
    assert infer == train
    gelus = [m for m in model.modules() if isinstance(m, nn.GELU)]
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(infer.get(m, 0) >= 1 for m in gelus + bns)
    for a, b in zip(plain, hooked_out):
        assert torch.equal(a, b) or rel_err(a, b) < 1e-6
    msdw = model.stages[0].blocks[0].mlp.dwconv
    seen = {}
    h1 = msdw.register_forward_pre_hook(
        lambda m, args: seen.update({'in': args[0].clone()}))
    h2 = msdw.register_forward_hook(
        lambda m, args, out: seen.update({'after': args[0].clone()}))
    with torch.no_grad():
        model(x)
    h1.remove()
    h2.remove()
    assert torch.equal(seen['in'], seen['after'])


@pytest.mark.parametrize('momentum', [0.1, None])
def test_layer_scale_folded_into_the_batch_norm(momentum):
    """scale(bn(x) + r) with the scale folded into the BatchNorm: the same
    output, gradients of all inputs and parameters, running statistics
    and batch count as the modules; a hook on the mixer sees its output
    without the scale, as the authors' module gives it."""
    import copy

    from transxnet_mm.models.layers import LayerScale
    from transxnet_mm.ops import scaled_batch_norm

    torch.manual_seed(0)
    bn = nn.BatchNorm2d(8, momentum=momentum).train()
    scale = LayerScale(8)
    scale.weight.data.uniform_(0.5, 2)
    scale.bias.data.uniform_(-1, 1)
    results = []
    for fold in (True, False):
        b, s = copy.deepcopy(bn), copy.deepcopy(scale)
        x = torch.randn(2, 8, 5, 6, generator=torch.Generator().manual_seed(1),
                        requires_grad=True)
        r = torch.randn(2, 8, 5, 6, generator=torch.Generator().manual_seed(2),
                        requires_grad=True)
        for _ in range(2):
            out = (scaled_batch_norm(x, b, s.weight, s.bias, r) if fold
                   else s(b(x) + r))
        out.sin().sum().backward()
        results.append([out, x.grad, r.grad, b.weight.grad, b.bias.grad,
                        s.weight.grad, s.bias.grad, b.running_mean,
                        b.running_var, b.num_batches_tracked])
    for a, b in zip(*results):
        assert torch.allclose(a.float(), b.float(), rtol=1e-5, atol=1e-6)

    model = _model(train=True)
    block = model.stages[0].blocks[0]
    seen = {}
    handle = block.token_mixer.register_forward_hook(
        lambda m, args, out: seen.update(args=args, out=out))
    model(torch.randn(2, 3, 64, 64))
    handle.remove()
    assert torch.allclose(seen['out'], block.token_mixer(*seen['args']),
                          atol=1e-6)


def test_training_kernels_keep_fewer_maps_for_backward():
    """What autograd saves in each branch (benchmark_utils.saved_activations,
    the tool saved_activations.py): folding the layer scales saves one
    C-channel map per block and branch, gelu_bn at least three of MS-FFN's
    hidden maps (ratio 4) per block. The model's forwards are left as they
    were."""
    from benchmark_utils import saved_activations

    model = _model(train=True)
    x = torch.randn(2, 3, 64, 64)
    saved = {}
    for off in ((), ('gelu_bn', ), ('layer_scale', )):
        with use_kernels(False, *off) if off else use_kernels(True):
            found = saved_activations(model, x)
        saved[off] = {b: sum(v for k, v in found.items()
                             if k.startswith(f'stages.blocks.{b}'))
                      for b in ('token_mixer', 'mlp')}
    # float32 maps of x's batch, strides 4, 8, 16, 32
    one_map = sum(2 * c * (16 >> i)**2 * 4 * len(stage.blocks)
                  for i, (c, stage) in enumerate(zip(model.channels,
                                                     model.stages)))
    for branch in ('token_mixer', 'mlp'):  # less the folded (C, ) vectors
        fewer = saved['layer_scale', ][branch] - saved[()][branch]
        assert 0.95 * one_map < fewer <= one_map
    assert saved['gelu_bn', ]['mlp'] - saved[()]['mlp'] >= 3 * 4 * one_map
    assert not any('forward' in vars(m) for m in model.modules())


def test_double_backward():
    """A gradient penalty (create_graph=True) through every op, with the
    kernels on (their backward then runs PyTorch's differentiable ops) and
    off: the same second-order gradient."""
    model = _model(train=True)
    x = torch.randn(2, 3, 64, 64, requires_grad=True)
    weights = [torch.randn(o.shape) for o in model(x)]
    grads = []
    for flag in (True, False):
        model.zero_grad()
        with use_kernels(flag):
            out = sum((o * w).sum() for o, w in zip(model(x), weights))
            (g, ) = torch.autograd.grad(out, x, create_graph=True)
            g.square().sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()
                                if p.grad is not None]))
    assert torch.isfinite(grads[0]).all() and grads[0].abs().sum() > 0
    assert rel_err(grads[0], grads[1]) < 1e-3


def _bf16_errors(model, x, train: bool):
    """Largest relative error of each output under CPU bf16 autocast
    against float32, and of the input gradient when training."""
    model.train(train)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad() if not train else torch.enable_grad():
        xr = x.clone().requires_grad_(train)
        ref = model(xr)
        weights = [torch.randn(o.shape, generator=g) for o in ref]
        if train:
            sum((o * w).sum() for o, w in zip(ref, weights)).backward()
        xa = x.clone().requires_grad_(train)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            out = model(xa)
        if train:
            sum((o.float() * w).sum()
                for o, w in zip(out, weights)).backward()
    errs = [rel_err(o.float(), r.float()) for o, r in zip(out, ref)]
    if train:
        errs.append(rel_err(xa.grad, xr.grad))
    return errs


@pytest.mark.parametrize('train', [False, True])
def test_bf16_autocast_no_worse_than_plain_pytorch(train):
    """bf16 autocast on CPU runs (training: forward and backward) and its
    error against float32 is no larger than that of plain PyTorch ops under
    the same autocast (the kernels step aside under autocast, and no
    in-place sum keeps bf16 where autocast would promote)."""
    model = _model()
    x = torch.randn(2, 3, 96, 128)
    ours = _bf16_errors(model, x, train)
    with use_kernels(False):
        plain = _bf16_errors(model, x, train)
    assert all(e < 0.1 for e in ours), ours
    for a, b in zip(ours, plain):
        assert a <= b * 1.01 + 1e-6, (ours, plain)


def test_layer_depths_for_learning_rate_decay():
    """Every parameter gets a depth below the count, monotone in the
    order the image flows through the stages and blocks."""
    model = TransXNet('t')
    num = sum(model.arch['depths']) + 2
    names = [n for n, _ in model.named_parameters(prefix='backbone')]
    flow = [n for i in range(4) for part in (
        f'downsample_layers.{i}.', f'stages.{i}.relative_pos_bias',
        f'stages.{i}.blocks.') for n in names if n.startswith(
            'backbone.' + part)]
    assert len(flow) + 8 == len(names)  # and the 4 output norms
    last = -1
    for name in flow:
        depth, count = model.get_layer_depth(name, 'backbone.')
        assert count == num and last <= depth < num - 1, name
        last = depth
    for name in set(names) - set(flow):
        assert model.get_layer_depth(name, 'backbone.') == (num - 1, num)
    assert model.get_layer_depth('backbone.downsample_layers.0.conv.weight',
                                 'backbone.') == (0, num)
    assert model.get_layer_depth('backbone.stages.3.blocks.2.norm1.weight',
                                 'backbone.')[0] == num - 2
    assert model.get_layer_depth('head.fc.weight', 'backbone.')[0] == num - 1


def test_model_files_hold_only_the_paper_modules():
    """The kernels live in transxnet_mm/ops: the backbone's files define no
    autograd Function, only the paper's modules."""
    from transxnet_mm.models import layers
    from transxnet_mm.models.backbones import transxnet
    classes = set()
    for module in (transxnet, layers):
        src = open(module.__file__).read()
        assert 'autograd.Function' not in src, module.__file__
        classes |= {n.name for n in ast.parse(src).body
                    if isinstance(n, ast.ClassDef)}
    assert classes >= {'IDConv', 'OSRA', 'STE', 'DMixer', 'MSFFN', 'Block',
                       'TransXNetStage', 'TransXNet'}


@pytest.mark.slow
def test_every_subpackage_imports_first():
    """Each subpackage imported first, in a fresh interpreter (as a user's
    ``from transxnet_mm.deploy import ...`` does): no import circle."""
    root = osp.join(ROOT, 'transxnet_mm')
    subpackages = sorted(d for d in os.listdir(root)
                         if osp.isfile(osp.join(root, d, '__init__.py')))
    assert {'apis', 'models', 'ops'} <= set(subpackages)
    procs = {name: subprocess.Popen(  # side by side, on all cores
        [sys.executable, '-c', f'import transxnet_mm.{name}'], cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for name in subpackages}
    for name, proc in procs.items():
        stderr = proc.communicate()[1]
        assert proc.returncode == 0, (name, stderr[-2000:])


def test_explain_says_which_path_each_module_takes():
    """ops.explain: CPU training takes the training kernels in the D-Mixer
    and MS-FFN, inference the in-place ones; decided as for CUDA, or with
    the kernels off, nothing is taken; the model is left as it was."""
    from transxnet_mm.ops import decisions, explain
    model = TransXNet(SMALL)
    x = torch.randn(2, 3, 64, 64)

    def taken(found):
        return {(d.module, d.kernel) for d in found if d.taken}

    train = taken(decisions(model.train(), x))
    assert {('stages.blocks.mlp', 'gelu_bn'),
            ('stages.blocks.mlp', 'layer_scale'),
            ('stages.blocks.token_mixer.global_unit', 'attention'),
            ('stages', 'bias_resize')} <= train
    assert not {k for _, k in train} & {'inplace'}
    with torch.no_grad():
        infer = taken(decisions(model.eval(), x))
        assert {k for _, k in infer} == {'inplace', 'bias_resize'}
        cuda = decisions(model, x, device='cuda')
    assert cuda and not taken(cuda)
    assert {d.why for d in cuda} == {"not verified on cuda: PyTorch's op"}
    # no block kernel is verified there: the blocks run PyTorch's modules
    assert not {d.kernel for d in cuda} & {'gelu_bn', 'layer_scale',
                                           'inplace'}
    with use_kernels(False):
        off = decisions(model.train(), x)
    assert off and not taken(off)
    table = explain(model.train(), x, title='small')
    assert table.splitlines()[0].startswith('small: training, input '
                                            '(2, 3, 64, 64) on cpu')
    assert 'stages.blocks.mlp' in table
    assert not any('forward' in vars(m) for m in model.modules())
