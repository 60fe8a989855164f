"""``compile_cfg``: the backbone's stages through ``torch.compile`` for
training and inference, equal to eager, without graph breaks, with dynamic
sizes, and copies that compile their own forward."""
import copy
import pickle

import pytest
import torch
from torch import nn
from verify_cuda import SMALL  # TransXNet-T with fewer blocks

from transxnet_mm import TransXNet

# One block a stage: compiling takes time in proportion to the blocks traced.
ONE_BLOCK = dict(SMALL, depths=[1, 1, 1, 1])


class Counting:
    """A torch.compile backend: aot_eager (AOT autograd, as inductor
    traces the graph, without code generation) that counts its graphs."""

    def __init__(self) -> None:
        from torch._dynamo.backends.registry import lookup_backend
        self.graphs = 0
        self._aot = lookup_backend('aot_eager')

    def __call__(self, gm, example_inputs):
        self.graphs += 1
        return self._aot(gm, example_inputs)


def _pair(train: bool, backend, dtype=torch.float32, dynamic: bool = True):
    """A compiled backbone and an eager one with the same weights, both with
    non-trivial statistics and layer scales."""
    torch.manual_seed(0)
    eager = TransXNet(ONE_BLOCK)
    for m in eager.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_var.uniform_(0.5, 2)
    for name, p in eager.named_parameters():
        if 'layer_scale' in name:
            p.data.uniform_(0.5, 1)
    compiled = TransXNet(
        ONE_BLOCK, compile_cfg=dict(backend=backend, dynamic=dynamic))
    compiled.load_state_dict(eager.state_dict())
    return (compiled.to(dtype).train(train), eager.to(dtype).train(train))


def _close(a, b, tol=1e-5) -> bool:
    return ((a - b).abs().max() / b.abs().max()).item() < tol


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.slow
@pytest.mark.parametrize('train', [False, True])
def test_compiled_equals_eager_and_sizes_do_not_recompile(train):
    """Outputs (and in training, gradients and running statistics) equal
    eager ones; with dynamic sizes, further image sizes reuse the graph.
    (PyTorch's guards compile once more after a square first size, or for
    maps below a size threshold: at most one more graph.) Training runs in
    float64: in float32 the stem's weight gradient, a small difference of
    large terms behind BatchNorm, differs by rounding alone (1e-2 relative)
    between any two orders of summation.

    Float attributes (BatchNorm's eps and momentum) are specialised from the
    start: by default Dynamo traces them as symbols under ``dynamic=True``,
    then restarts its analysis to specialise them, tracing the same graph
    twice (half of this test's time)."""
    backend = Counting()
    dtype = torch.float64 if train else torch.float32
    compiled, eager = _pair(train, backend, dtype)
    for size in [(96, 130), (112, 90), (128, 160)]:
        x = torch.randn(2, 3, *size, dtype=dtype)
        outs = {}
        with torch.set_grad_enabled(train), \
                torch._dynamo.config.patch(specialize_float=True):
            for model in (compiled, eager):
                torch.manual_seed(1)  # the same drop-path draws
                outs[model] = model(x)
                if train:
                    sum(o.square().mean() for o in outs[model]).backward()
        assert all(_close(a, b) for a, b in zip(outs[compiled], outs[eager]))
    assert backend.graphs <= 2
    if train:
        grads = dict(eager.named_parameters())
        for name, p in compiled.named_parameters():
            ref = grads[name].grad
            if ref.abs().max() < 1e-15:  # a conv bias before a BatchNorm
                assert p.grad.abs().max() < 1e-15, name
            else:
                assert _close(p.grad, ref, 1e-8), name
        stats = dict(eager.named_buffers())
        for name, b in compiled.named_buffers():
            assert torch.allclose(b.double(), stats[name].double(),
                                  rtol=1e-10, atol=1e-12), name


@pytest.mark.parametrize('train', [False, True])
def test_no_graph_breaks(train):
    """The whole of the stages is one graph: the kernels of transxnet_mm.ops
    step aside while Dynamo traces (the plain ops are compiled)."""
    model = TransXNet(SMALL).train(train)
    x = torch.randn(2, 3, 64, 96)
    explanation = torch._dynamo.explain(model.forward_stages)(x)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


@pytest.mark.slow
def test_copies_compile_their_own_forward():
    """deepcopy and pickle give a backbone that compiles its own forward
    (the copy's weights), and compile_cfg changes no state_dict key. Static
    sizes: a dynamic compile takes several times longer."""
    compiled, eager = _pair(False, Counting(), dynamic=False)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        compiled(x)
        for clone in (copy.deepcopy(compiled),
                      pickle.loads(pickle.dumps(compiled))):
            assert clone._compiled is None
            clone.norm3.weight.mul_(2)
            assert not torch.equal(clone(x)[3], compiled(x)[3])
    assert list(compiled.state_dict()) == list(eager.state_dict())


def test_traced_backbone_runs_eager():
    """Under torch.jit.trace (the FLOPs counter, ONNX export) nothing is
    compiled."""
    backend = Counting()
    compiled, eager = _pair(False, backend)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        traced = torch.jit.trace(compiled, x, check_trace=False)
        assert all(_close(a, b) for a, b in zip(traced(x), eager(x)))
    assert backend.graphs == 0


def test_compile_cfg_from_a_paper_config():
    """The switch as a config sets it: the registry builds a compiled
    backbone; True takes torch.compile's defaults."""
    from helpers import config_file
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope
    cfg = Config.fromfile(config_file('retinanet_transxnet_t'))
    init_default_scope(cfg.default_scope)
    backbone = dict(cfg.model.backbone, init_cfg=None, compile_cfg=True)
    assert MODELS.build(backbone).compile_cfg == {}
    backbone['compile_cfg'] = dict(mode='max-autotune', dynamic=False)
    assert MODELS.build(backbone).compile_cfg == dict(mode='max-autotune',
                                                      dynamic=False)


def test_compile_cfg_errors_name_the_fix():
    with pytest.raises(ValueError, match=r"unknown option.*'backends'.*"
                       r"'backend'"):
        TransXNet(SMALL, compile_cfg=dict(backends='inductor'))
    with pytest.raises(TypeError, match='None, True or a dict'):
        TransXNet(SMALL, compile_cfg='inductor')


@pytest.mark.slow
def test_inductor_inference_matches_eager():
    """The default backend (inductor: C++ code on CPU) at inference, with
    torch.compile's defaults (``compile_cfg=True``). A training step and
    ``dynamic=True`` are left out here: the first compiles for minutes on
    CPU, the second fails in inductor on torch 2.13 at inference
    (docs/get_started.md)."""
    torch.manual_seed(0)
    eager = TransXNet(ONE_BLOCK).eval()
    compiled = TransXNet(ONE_BLOCK, compile_cfg=True).eval()
    compiled.load_state_dict(eager.state_dict())
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        assert all(_close(a, b, 1e-4) for a, b in zip(compiled(x), eager(x)))
