"""The default path (kernels of transxnet_mm.ops on) and the plain one
(``use_kernels(False)``) against the authors' step-by-step computation:
outputs and gradients."""
import pytest
from helpers import rel_err
import torch
import torch.nn.functional as F

from transxnet_mm import TransXNet
from transxnet_mm.models.utils.ckpt_convert import convert_official, to_official
from reference_model import reference_forward
from transxnet_mm.ops import (BiasedAttention, BicubicResize,
                              DepthwiseConv2dCPU, biased_attention,
                              resize_bias, use_kernels)


def load(arch, sd, train=False):
    model = TransXNet(arch)
    model.load_state_dict(convert_official(sd)[0], strict=False)
    return model.train(train)


@pytest.mark.parametrize('arch,shape', [('t', (8, 224, 224)),
                                        pytest.param('t', (2, 512, 512),
                                                     marks=pytest.mark.slow),
                                        pytest.param('t', (1, 800, 1216),
                                                     marks=pytest.mark.slow),
                                        ('t', (1, 97, 131)),
                                        ('s', (1, 97, 131)),
                                        ('b', (2, 64, 96))])
@pytest.mark.parametrize('kernels', [True, False])
def test_outputs_match_reference_at_benchmarked_sizes(arch, shape, kernels,
                                                      official_sd):
    sd = official_sd(arch)
    model = load(arch, sd)
    x = torch.randn(shape[0], 3, *shape[1:],
                    generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), use_kernels(kernels):
        for out, exp in zip(model(x), reference_forward(sd, x)):
            assert rel_err(out, exp) < 1e-4


def _reference_grads(sd, x, weights, dtype):
    sd = {k: (v.to(dtype) if v.is_floating_point() else v).clone()
          for k, v in sd.items()}
    leaves = {k: v.requires_grad_() for k, v in sd.items()
              if v.is_floating_point() and 'running_' not in k}
    x = x.detach().to(dtype).requires_grad_()
    outs = reference_forward(sd, x, training=True)
    sum((o * w.to(dtype)).sum() for o, w in zip(outs, weights)).backward()
    return x.grad, {k: v.grad for k, v in leaves.items()}


@pytest.mark.parametrize('arch,shape,kernels', [
    # 2x384x384: the config-level training benchmarks' size; at 2x512x512
    # the authors' float32 computation beside ours peaked over the suite's
    # 6 GB bound (tests/memory_guard.py)
    pytest.param('t', (2, 384, 384), True, marks=pytest.mark.slow),
    ('t', (2, 250, 330), True),
    pytest.param('t', (2, 250, 330), False, marks=pytest.mark.slow),
    pytest.param('s', (2, 130, 170), True, marks=pytest.mark.slow),
    pytest.param('b', (2, 96, 160), True, marks=pytest.mark.slow)])
def test_gradients_match_reference(arch, shape, kernels, official_sd):
    """Training mode (batch statistics): gradients of the input and of every
    weight, through the per-stage bias resize and the fused attention.

    The input gradient agrees with the authors' float32 computation to 1e-4.
    Weight gradients are judged against a float64 run of it: some (weights
    right before a training-mode BatchNorm over a tiny variance) are only
    good to ~1e-3 in ANY float32 order of operations, so ours must be as
    close to float64 as the authors' float32 computation is: within 1.5x
    overall and 2x per tensor (on such a tensor the error moves by that much
    with the order of float32 operations alone: running IDConv's forward
    convolution in NCHW instead of channels-last takes TransXNet-B's
    ``network.4.16...sr.1.conv.weight`` from under 1.5x to 1.63x of the
    authors' error). Gradients that are exactly zero in float64 (biases a
    BatchNorm removes) are float noise on both sides.
    """
    sd = {k: v for k, v in official_sd(arch).items()
          if not k.startswith('classifier')}
    model = load(arch, sd, train=True)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape[0], 3, *shape[1:], generator=g)
    xo = x.clone().requires_grad_()
    with use_kernels(kernels):
        outs = model(xo)
        weights = [torch.randn(o.shape, generator=g) for o in outs]
        sum((o * w).sum() for o, w in zip(outs, weights)).backward()
    ours, _ = to_official({n: p.grad for n, p in model.named_parameters()
                           if not n.startswith('norm')})
    x32, ref32 = _reference_grads(sd, x, weights, torch.float32)
    assert set(ours) == set(ref32)
    if shape[1] * shape[2] > 200 * 200:
        # float64 at this size is too slow for the suite
        assert rel_err(xo.grad, x32) < 1e-4
        return
    x64, ref64 = _reference_grads(sd, x, weights, torch.float64)
    # The input gradient too: within 1e-4 of the authors' float32, or as
    # close to float64 as theirs (B at 96x160 ours is 1.1e-4 from theirs,
    # through BatchNorms over tiny maps).
    assert rel_err(xo.grad, x32) < 1e-4 or \
        rel_err(xo.grad, x64) <= 1.5 * rel_err(x32, x64)
    scale = max(v.abs().max().item() for v in ref64.values())

    def err(a, b, norm):
        return (a.double() - b).abs().max().item() / norm

    for k, g64 in ref64.items():
        norm = g64.abs().max().item()
        if norm < 1e-9 * scale:  # exactly zero up to float64 rounding
            assert ours[k].abs().max() < 1e-6 * scale, k
            continue
        assert err(ours[k], g64, norm) <= \
            2 * err(ref32[k], g64, norm) + 1e-6, k
    overall = [max(err(grads[k], ref64[k], scale) for k in ref64)
               for grads in (ours, ref32)]
    assert overall[0] <= 1.5 * overall[1] + 1e-6, overall


def test_inference_shortcuts_leave_input_and_match_autograd_path(
        official_sd):
    """Without gradients the blocks write into their own intermediate maps:
    the caller's input is left as it was, and the result is the one of the
    plain (autograd-ready) path, to float32 rounding."""
    model = load('t', official_sd('t'))
    x = torch.randn(2, 3, 70, 90, generator=torch.Generator().manual_seed(0))
    given = x.clone()
    with torch.no_grad():
        fast = model(x)
    assert torch.equal(x, given)
    for a, b in zip(fast, model(x)):  # gradients enabled: no shortcuts
        assert rel_err(a, b.detach()) < 1e-5


@pytest.mark.parametrize('shape,size', [((1, 2, 784, 49), (15200, 950)),
                                        ((1, 3, 196, 49), (825, 63)),
                                        ((1, 2, 3136, 49), (100, 25)),
                                        ((1, 2, 49, 49), (49, 100))])
def test_resize_bias_is_pytorch_bicubic(shape, size):
    """The separable resize against F.interpolate: up (stage 2 of an
    800x1216 input, rows not a multiple of the block), odd, down, keys
    only."""
    bias = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    out = resize_bias(bias, size)
    expected = F.interpolate(bias, size=size, mode='bicubic',
                             align_corners=False)
    assert out.shape == expected.shape and out.is_contiguous()
    # PyTorch's weight formula in float32 (the one the export uses too): a
    # few float32 ulps from the weights of PyTorch's compiled kernel
    assert rel_err(out, expected) < 2e-6


@pytest.mark.slow
def test_torch_compile_matches_eager():
    """The whole forward (input checks, stages, norms) in one graph; one
    block a stage (compiling time grows with the blocks)."""
    torch.manual_seed(0)
    model = TransXNet(dict(TransXNet.arch_settings['t'],
                           depths=[1, 1, 1, 1])).eval()
    x = torch.randn(1, 3, 96, 130)
    compiled = torch.compile(model, backend='aot_eager', fullgraph=True)
    with torch.no_grad():
        for a, b in zip(compiled(x), model(x)):
            assert torch.allclose(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('shape,size', [((1, 2, 49, 16), (130, 33)),
                                        ((1, 1, 64, 49), (31, 7)),
                                        ((1, 3, 20, 20), (20, 45))])
def test_bicubic_resize_gradient(shape, size):
    """Our backward of the bias resize against autograd through PyTorch's
    own resize, both judged in float64 (up-, down- and one-axis resizes)."""
    g = torch.Generator().manual_seed(0)
    bias = torch.randn(shape, generator=g, dtype=torch.float64)
    grad = torch.randn(shape[:2] + size, generator=g, dtype=torch.float64)
    ref = bias.clone().requires_grad_()
    F.interpolate(ref, size=size, mode='bicubic').backward(grad)
    ours = bias.float().requires_grad_()
    out = BicubicResize.apply(ours, size)
    assert rel_err(out, F.interpolate(bias.float(), size=size,
                                      mode='bicubic')) < 1e-6
    out.backward(grad.float())
    assert rel_err(ours.grad.double(), ref.grad) < 1e-5


@pytest.mark.parametrize('batch,kernel,size', [(2, 7, (33, 20)),
                                               (1, 5, (16, 70))])
def test_depthwise_conv_gradients(batch, kernel, size):
    """Input, weight (blockwise sums) and bias gradients of the CPU
    depthwise conv against float64 autograd."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 6, *size, generator=g, dtype=torch.float64)
    w = torch.randn(6, 1, kernel, kernel, generator=g, dtype=torch.float64)
    b = torch.randn(6, generator=g, dtype=torch.float64)
    grad = torch.randn(batch, 6, *size, generator=g, dtype=torch.float64)
    ref = [t.clone().requires_grad_() for t in (x, w, b)]
    F.conv2d(*ref, 1, kernel // 2, 1, 6).backward(grad)
    ours = [t.float().requires_grad_() for t in (x, w, b)]
    DepthwiseConv2dCPU.apply(*ours, (kernel // 2,) * 2).backward(
        grad.float())
    for o, r in zip(ours, ref):
        assert rel_err(o.grad.double(), r.grad) < 1e-5


@pytest.mark.parametrize('batch,heads', [(2, 1), (1, 3)])
def test_attention_gradients_without_saving_the_matrix(batch, heads):
    """Output and q, k, v and bias gradients of the training attention
    against float64 autograd of ``softmax(q k^T * s + bias) v``; the
    attention matrix is not saved (it is recomputed in backward)."""
    g = torch.Generator().manual_seed(0)
    N, M, d = 40, 12, 8
    q, k, v = (torch.randn(batch, heads, n, d, generator=g,
                           dtype=torch.float64) for n in (N, M, M))
    bias = torch.randn(1, heads, N, M, generator=g, dtype=torch.float64)
    grad = torch.randn(batch, heads, N, d, generator=g, dtype=torch.float64)
    ref = [t.clone().requires_grad_() for t in (q, k, v, bias)]
    expected = ((ref[0] @ ref[1].mT) * d**-0.5 + ref[3]).softmax(-1) @ ref[2]
    expected.backward(grad)
    ours = [t.float().requires_grad_() for t in (q, k, v, bias)]
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(
            lambda t: saved.append(t) or t, lambda t: t):
        out = biased_attention(*ours, d**-0.5)
    # N x M: only the bias itself (the stage's, shared by its blocks).
    assert saved and all(t.data_ptr() == ours[3].data_ptr() for t in saved
                         if t.shape[-2:] == (N, M))
    assert rel_err(out.double(), expected.detach()) < 1e-6
    out.backward(grad.float())
    for o, r in zip(ours, ref):
        assert rel_err(o.grad.double(), r.grad) < 1e-5


def test_attention_gradgradcheck():
    """First and second derivatives of the training attention (double
    backward takes differentiable ops) by finite differences, float64."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, n, 4, generator=g, dtype=torch.float64,
                           requires_grad=True) for n in (12, 5, 5))
    bias = torch.randn(1, 2, 12, 5, generator=g, dtype=torch.float64,
                       requires_grad=True)

    def attention(*t):
        return BiasedAttention.apply(*t, 0.5)

    assert torch.autograd.gradcheck(attention, (q, k, v, bias))
    assert torch.autograd.gradgradcheck(attention, (q, k, v, bias))
