"""Model complexity, speed and memory of any of our configs (mmdet, mmseg,
mmpretrain), and the authors' model as a baseline: the helpers of the tools
in ``tools/analysis_tools/`` (get_flops, benchmark, benchmark_backbone,
benchmark_train, saved_activations) and ``tools/deployment/benchmark_onnx.py``.
The models come from :func:`transxnet_mm.apis.build_model`.
"""
import importlib.util
import os
import platform
import statistics
import time
import weakref
from functools import partial
from math import prod
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.analysis import FlopAnalyzer, parameter_count
from mmengine.analysis.jit_handles import get_shape
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from transxnet_mm.ops.explain import following

DEFAULT_SHAPES = {'mmdet': (800, 1280), 'mmseg': (512, 512),
                  'mmpretrain': (224, 224)}
# Ops that compute OSRA's attention products (q @ k^T and attn @ v).
ATTENTION_OPS = ('matmul', 'bmm', 'scaled_dot_product_attention')


def dummy_inputs(scope: str, shape: Sequence[int], batch_size: int = 1,
                 device: str = 'cpu') -> Tuple[torch.Tensor, dict]:
    """Images of ``shape`` and the other keyword arguments of the model's
    tensor-mode forward (mmdet's two-stage detectors need the image meta)."""
    shape = tuple(shape)
    inputs = torch.rand(batch_size, 3, *shape, device=device)
    if scope == 'mmdet':
        from mmdet.structures import DetDataSample
        meta = dict(img_shape=shape, ori_shape=shape, pad_shape=shape,
                    batch_input_shape=shape, scale_factor=(1., 1.))
        return inputs, dict(data_samples=[
            DetDataSample(metainfo=meta) for _ in range(batch_size)])
    return inputs, {}


def sdpa_flop_jit(inputs: list, outputs: list) -> int:
    """Multiply-adds of ``scaled_dot_product_attention`` (OSRA's fused
    attention), which mmengine's FlopAnalyzer has no handle for: the two
    products q k^T (N x d by d x M) and attn v (N x M by M x d_v)."""
    q, k, v = (get_shape(x) for x in inputs[:3])
    rows = prod(q[:-1])  # batch x heads x N
    return rows * k[-2] * q[-1] + rows * k[-2] * v[-1]


def complexity(model: torch.nn.Module, inputs: torch.Tensor,
               kwargs: Optional[dict] = None) -> Dict[str, int]:
    """Parameters and FLOPs (multiply-adds) from one trace: ``flops_paper``
    leaves out OSRA's attention products as the paper does,
    ``flops_with_attention`` counts them."""
    # The tracer takes tensors only: bind the rest, as mmdet's get_flops does.
    forward = model.forward
    model.forward = partial(forward, **(kwargs or {}))
    try:
        analyzer = FlopAnalyzer(model, (inputs, ))
        analyzer.set_op_handle(
            'aten::scaled_dot_product_attention', sdpa_flop_jit)
        analyzer.unsupported_ops_warnings(False)
        analyzer.uncalled_modules_warnings(False)
        with torch.no_grad():
            total = analyzer.total()
            by_module = analyzer.by_module_and_operator()
    finally:
        model.forward = forward
    attention = sum(
        flops for name, ops in by_module.items()
        if name.split('.')[-1] == 'global_unit'
        for op, flops in ops.items() if op in ATTENTION_OPS)
    return dict(params=parameter_count(model)[''],
                flops_paper=total - attention, flops_with_attention=total)


def median_time(fn: Callable[[], object], runs: int = 10, warmup: int = 2,
                sync: Optional[Callable[[], None]] = None) -> List[float]:
    """Seconds per call of ``fn`` over ``runs`` calls after ``warmup``;
    returns all of them (take the median)."""
    sync = sync or (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return times


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


class LiveBytes(TorchDispatchMode):
    """The bytes held by tensor storages while active, and their peak.

    Every storage an op returns or takes is counted once, from the first
    time it is seen until it is freed (a weak reference's callback), so the
    cost is proportional to what is alive, not to the number of
    allocations. Storages that existed before the mode count only when
    freed (they were not allocated here), as in the profiler's running sum
    of allocations and frees. Temporaries an op allocates and frees inside
    its own kernel are not seen."""

    def __init__(self):
        super().__init__()
        self.current = self.peak = 0
        self._live: Dict[int, Tuple[weakref.ref, int]] = {}

    def _track(self, tensors, allocated: bool) -> None:
        for t in tensors:
            if not isinstance(t, torch.Tensor) or t.is_meta or \
                    t.layout != torch.strided:
                continue
            storage = t.untyped_storage()
            key = id(storage)
            if key in self._live:
                continue
            nbytes = storage.nbytes()
            self._live[key] = (weakref.ref(storage, partial(
                self._free, key, nbytes)), nbytes)
            if allocated:
                self.current += nbytes
                self.peak = max(self.peak, self.current)

    def _free(self, key: int, nbytes: int, _ref) -> None:
        self._live.pop(key, None)
        self.current -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        self._track(tree_leaves((args, kwargs)), allocated=False)
        out = func(*args, **kwargs)
        self._track(tree_leaves(out), allocated=True)
        return out


def cpu_peak_bytes(step: Callable[[], object], steps: int = 2) -> int:
    """Peak of the tensor bytes allocated (+) and freed (-) over ``steps``
    calls of ``step`` (:class:`LiveBytes`): what one step leaves allocated
    counts in the next."""
    with LiveBytes() as live:
        for _ in range(steps):
            step()
    return live.peak


def measure_step(step: Callable[[], object], iters: int, warmup: int,
                 device: str, resident_bytes: int = 0) -> dict:
    """Seconds of each of ``iters`` calls of ``step`` after ``warmup`` (at
    least 2), ``peak_mb``: the peak memory of the first two calls above what
    was allocated before them (anything a call keeps for the next counts),
    and ``total_mb``: that peak plus what was allocated before (GPU:
    ``torch.cuda.max_memory_allocated``; CPU: ``resident_bytes``, the
    caller's weights and inputs). CPU memory comes from the live
    tensor storages (:class:`LiveBytes`; RSS would mostly measure malloc's
    fragmentation)."""
    cuda = device.startswith('cuda')
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        step()
        total = torch.cuda.max_memory_allocated()
        peak = total - base
    else:
        peak = cpu_peak_bytes(step)
        total = max(peak, 0) + resident_bytes
    times = median_time(step, iters, max(warmup - 2, 0), sync)
    return dict(times=times, peak_mb=max(peak, 0) / 2**20,
                total_mb=total / 2**20)


def saved_activations(model: torch.nn.Module,
                      x: torch.Tensor) -> Dict[str, int]:
    """Bytes that autograd keeps for backward after one training forward of
    ``model`` on ``x``, by the module that saved them: its name with the
    stage and block indices dropped (``stages.blocks.mlp.fc1``), each
    storage counted once (for the first module that saves it), parameters
    left out. Modules are followed by wrapping their ``forward`` for the
    call, not with hooks, which would make the kernels step aside."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: Dict[int, Tuple[int, str]] = {}
    with following(model) as stack:

        def pack(t: torch.Tensor) -> torch.Tensor:
            storage = t.untyped_storage()
            ptr = storage.data_ptr()
            if ptr not in params and ptr not in seen:
                seen[ptr] = (storage.nbytes(), stack[-1])
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = model(x)
    del out
    by_module: Dict[str, int] = {}
    for nbytes, key in seen.values():
        by_module[key] = by_module.get(key, 0) + nbytes
    return dict(sorted(by_module.items(), key=lambda kv: -kv[1]))


def authors_model(path: str, arch: str, state_dict: Dict[str, torch.Tensor],
                  drop_path_rate: float = 0.) -> torch.nn.Module:
    """The authors' dense TransXNet (``fork_feat=True``) from their model
    file, holding the weights of our backbone's ``state_dict`` (their key
    names from our converter; our output norm i is their ``norm{2i}``).
    Output norms our backbone lacks (stages it does not output) are left
    out of theirs with ``start_level``, as their configs do."""
    from transxnet_mm.models.utils.ckpt_convert import to_official
    if not os.path.isfile(path):
        raise SystemExit(f'{path!r} does not exist: give the path of the '
                         "authors' model file, e.g. "
                         '../shared/reference/authors_transxnet_dense.py')
    spec = importlib.util.spec_from_file_location('authors_transxnet', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sd, norms = to_official(state_dict)
    outputs = sorted({int(k[4]) for k in norms})
    model = module.TransXNet(arch=arch, fork_feat=True,
                             drop_path_rate=drop_path_rate,
                             start_level=outputs[0])
    sd.update((f'norm{2 * int(k[4])}{k[5:]}', v) for k, v in norms.items())
    model.load_state_dict(sd)
    return model


def machine(device: str, threads: int) -> str:
    """The processor (or GPU) a benchmark ran on, for its table's title."""
    if device.startswith('cuda'):
        return f'{torch.cuda.get_device_name()} (CUDA {torch.version.cuda})'
    model = platform.processor()
    try:
        with open('/proc/cpuinfo') as f:
            model = next(line.split(':', 1)[1].strip() for line in f
                         if line.startswith('model name'))
    except (OSError, StopIteration):
        pass
    return f'{model}, {threads} threads'


def matmul_contender(threads: int) -> None:
    """A competing process for ``--contention`` measurements: matrix
    products on ``threads`` threads until killed."""
    torch.set_num_threads(threads)
    a = torch.randn(1024, 1024)
    while True:
        a = torch.tanh(a @ a)
