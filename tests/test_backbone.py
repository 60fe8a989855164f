"""TransXNet backbone: shapes, options, parameter counts, exactness."""
import math

import pytest
from helpers import rel_err
import torch
from torch.nn.modules.batchnorm import _BatchNorm

from transxnet_mm import TransXNet
from transxnet_mm.models.utils.ckpt_convert import convert_official
from reference_model import reference_forward

CHANNELS = {'t': [48, 96, 224, 448], 's': [64, 128, 320, 512],
            'b': [76, 152, 336, 672]}


def n_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize('arch', ['t', 's', 'b'])
def test_output_shapes_and_strides(arch):
    model = TransXNet(arch).eval()
    for H, W in [(64, 64), (97, 131), (33, 45)]:
        with torch.no_grad():
            outs = model(torch.randn(2, 3, H, W))
        assert len(outs) == 4
        h, w = math.ceil(H / 4), math.ceil(W / 4)
        for i, out in enumerate(outs):
            assert out.shape == (2, CHANNELS[arch][i], h, w)
            h, w = math.ceil(h / 2), math.ceil(w / 2)


def test_arch_aliases_and_dict():
    assert TransXNet('tiny').arch == TransXNet('T').arch
    arch = dict(TransXNet.arch_settings['t'], depths=[1, 1, 1, 1])
    model = TransXNet(arch)
    assert [len(s.blocks) for s in model.stages] == [1, 1, 1, 1]


def test_out_indices():
    model = TransXNet('t', out_indices=(1, 3)).eval()
    outs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [96, 448]
    assert not hasattr(model, 'norm0') and hasattr(model, 'norm3')
    assert len(TransXNet('t', out_indices=-1).eval()(
        torch.randn(1, 3, 32, 32))) == 1


def test_frozen_stages():
    model = TransXNet('t', frozen_stages=2)
    model.train()
    frozen = [model.downsample_layers[0], model.stages[0], model.norm0,
              model.downsample_layers[1], model.stages[1], model.norm1]
    for m in frozen:
        assert all(not p.requires_grad for p in m.parameters())
        assert all(not b.training for b in m.modules()
                   if isinstance(b, _BatchNorm))
    for m in [model.downsample_layers[2], model.stages[2], model.norm2]:
        assert all(p.requires_grad for p in m.parameters())
        assert all(b.training for b in m.modules()
                   if isinstance(b, _BatchNorm))
    stem_only = TransXNet('t', frozen_stages=0)
    assert not any(p.requires_grad
                   for p in stem_only.downsample_layers[0].parameters())
    assert all(p.requires_grad for p in stem_only.stages[0].parameters())


def test_frozen_stages_keep_weights_through_training_step():
    model = TransXNet('t', frozen_stages=1)
    model.train()
    before = {k: v.clone() for k, v in model.stages[0].state_dict().items()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad],
                          lr=0.1)
    sum(o.mean() for o in model(torch.randn(2, 3, 64, 64))).backward()
    opt.step()
    for k, v in model.stages[0].state_dict().items():
        assert torch.equal(v, before[k]), k  # BN running stats included


def test_norm_eval():
    model = TransXNet('t', norm_eval=True)
    model.train()
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert bns and all(not m.training for m in bns)
    assert model.norm0.training  # GroupNorms follow the mode as usual


def test_with_cp_same_outputs_and_gradients():
    torch.manual_seed(0)
    plain = TransXNet('t', drop_path_rate=0.)
    ckpt = TransXNet('t', drop_path_rate=0., with_cp=True)
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 64, 80)
    grads = []
    for model in (plain, ckpt):
        model.eval()  # fixed BN statistics: checkpointing recomputes them
        xi = x.clone().requires_grad_()
        outs = model(xi)
        sum((o * o).mean() for o in outs).backward()
        grads.append((outs, xi.grad,
                      {n: p.grad for n, p in model.named_parameters()}))
    (o1, g1, p1), (o2, g2, p2) = grads
    for a, b in zip(o1, o2):
        assert torch.allclose(a, b, atol=1e-6)
    assert torch.allclose(g1, g2, atol=1e-6)
    for name in p1:
        assert torch.allclose(p1[name], p2[name], atol=1e-6), name


@pytest.mark.parametrize('arch,classifier,dense',
                         [('t', 12.83, 12.39), ('s', 26.86, 26.35),
                          ('b', 48.01, 47.34)])
def test_parameter_counts(arch, classifier, dense):
    """The paper's ImageNet classifier (stages + GroupNorm + 1x1 conv to 1000
    classes) and the dense backbone with its four output norms."""
    cls_backbone = TransXNet(arch, out_indices=(3, ))
    c = CHANNELS[arch][-1]
    assert round((n_params(cls_backbone) + c * 1000 + 1000) / 1e6, 2) == \
        classifier
    assert round(n_params(TransXNet(arch)) / 1e6, 2) == dense


def test_reference_matches_authors_outputs(official_sd, reference_dir):
    """The plain formulation used as oracle reproduces the authors' model."""
    data = torch.load(f'{reference_dir}/official_outputs_t.pt',
                      weights_only=True)
    sd = official_sd('t')
    for name, x in data['inputs'].items():
        with torch.no_grad():
            outs = reference_forward(sd, x)
        for out, expected in zip(outs, data['outputs'][name]):
            assert rel_err(out, expected) < 1e-5, name


def _load_official(arch, sd):
    model = TransXNet(arch).eval()
    converted, left_out = convert_official(sd)
    missing, unexpected = model.load_state_dict(converted, strict=False)
    assert not unexpected
    assert all(k.startswith('norm') for k in missing)
    assert all(k.startswith('classifier.') for k in left_out)
    return model


def test_matches_authors_outputs_t(official_sd, reference_dir):
    """The authors' TransXNet-T outputs at 224x224 and at the odd 250x330
    (bicubic resize of the relative position bias included)."""
    data = torch.load(f'{reference_dir}/official_outputs_t.pt',
                      weights_only=True)
    model = _load_official('t', official_sd('t'))
    for name, x in data['inputs'].items():
        with torch.no_grad():
            outs = model(x)
        assert len(outs) == 4
        for out, expected in zip(outs, data['outputs'][name]):
            assert out.shape == expected.shape
            assert rel_err(out, expected) < 1e-4, name


@pytest.mark.parametrize('arch', ['s', 'b'])
def test_matches_reference_s_b(arch, official_sd):
    """S and B (other head and group counts, MLP ratios) against the oracle
    at 224x224 and at a size that is not a multiple of 32."""
    sd = official_sd(arch)
    model = _load_official(arch, sd)
    g = torch.Generator().manual_seed(0)
    for size in [(224, 224), (250, 330)]:
        x = torch.randn(1, 3, *size, generator=g)
        with torch.no_grad():
            outs = model(x)
            expected = reference_forward(sd, x)
        for out, exp in zip(outs, expected):
            assert rel_err(out, exp) < 1e-4, size
