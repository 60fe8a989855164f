"""The training kernels with ``nn.SyncBatchNorm`` under DDP
(transxnet_mm/ops/sync_bn.py): processes in a gloo group, each with its part
of a batch, compute what one process with plain BatchNorm computes for the
whole batch. PyTorch's own SyncBatchNorm refuses CPU tensors, so every
SyncBatchNorm in these modules running through the kernels is part of what
passes."""
import os.path as osp
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from transxnet_mm.models.backbones.transxnet import MSFFN, STE, LayerScale
from transxnet_mm.ops import use_kernels

CHANNELS = 16
PARTS = (1, 3)  # images per process: unequal, as images of other sizes are


def _modules(norm: str) -> nn.ModuleList:
    """An MS-FFN and an STE (every BatchNorm of a block but IDConv's and
    OSRA's) and the two layer scales folded into them, with random
    weights (the same for every norm type)."""
    torch.manual_seed(0)
    modules = nn.ModuleList([
        MSFFN(CHANNELS, 4, dict(type=norm)), STE(CHANNELS, dict(type=norm)),
        LayerScale(CHANNELS), LayerScale(CHANNELS)])
    with torch.no_grad():
        for name, p in modules.named_parameters():
            p.uniform_(0.5, 1.5) if 'weight' in name and p.dim() == 1 \
                else p.add_(torch.randn_like(p) * 0.1)
        for m in modules.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_var.fill_(2.)
    return modules.train()


def _step(modules: nn.ModuleList, x: torch.Tensor) -> dict:
    """Two training forwards (the second with the running statistics of the
    first) and one backward of a fixed linear loss."""
    mlp, ste, scale1, scale2 = modules
    x = x.clone().requires_grad_()
    for _ in range(2):
        outs = (mlp(x, layer_scale=scale2),
                ste.scaled(x, scale1, residual=x))
    gen = torch.Generator().manual_seed(1)
    weights = [torch.randn(sum(PARTS), *o.shape[1:], generator=gen)
               for o in outs]
    return dict(outs=outs, x=x, weights=weights)


def _backward(step: dict, rows: slice) -> None:
    sum((o * w[rows]).sum() for o, w in zip(step['outs'],
                                            step['weights'])).backward()


def _results(modules: nn.ModuleList, step: dict) -> dict:
    return dict(outs=[o.detach() for o in step['outs']],
                x_grad=step['x'].grad,
                grads={n: p.grad.clone()
                       for n, p in modules.named_parameters()},
                buffers={n: b.clone() for n, b in modules.named_buffers()})


def _worker(rank: int, init: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=init, rank=rank,
                            world_size=len(PARTS))
    try:
        modules = _modules('SyncBN')
        assert sum(isinstance(m, nn.SyncBatchNorm)
                   for m in modules.modules()) == 6
        x = torch.randn(sum(PARTS), CHANNELS, 12, 10,
                        generator=torch.Generator().manual_seed(2))
        start = sum(PARTS[:rank])
        rows = slice(start, start + PARTS[rank])
        step = _step(modules, x[rows])
        _backward(step, rows)
        result = _results(modules, step)
        # A gradient penalty through a synchronised BatchNorm: a clear error.
        step = _step(modules, x[rows])
        try:
            torch.autograd.grad(step['outs'][0].sum(), step['x'],
                                create_graph=True)
        except RuntimeError as e:
            result['double_backward'] = str(e)
        torch.save(result, osp.join(out_dir, f'rank{rank}.pt'))
    finally:
        dist.destroy_process_group()


def test_sync_batch_norm_over_a_process_group(tmp_path):
    """Two gloo processes with 1 and 3 images against one process with all
    4 and plain BatchNorm: outputs, input gradients, the summed parameter
    gradients (DDP averages them next) and the running statistics."""
    mp.spawn(_worker, args=(f'file://{tmp_path}/init', str(tmp_path)),
             nprocs=len(PARTS))
    ranks = [torch.load(tmp_path / f'rank{r}.pt') for r in range(len(PARTS))]
    x = torch.randn(sum(PARTS), CHANNELS, 12, 10,
                    generator=torch.Generator().manual_seed(2))
    with use_kernels(False):  # the reference: PyTorch's BatchNorm2d
        modules = _modules('BN')
        step = _step(modules, x)
        _backward(step, slice(None))
        ref = _results(modules, step)

    def close(a, b):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)

    for i, out in enumerate(ref['outs']):
        close(torch.cat([r['outs'][i] for r in ranks]), out)
    close(torch.cat([r['x_grad'] for r in ranks]), ref['x_grad'])
    for name, grad in ref['grads'].items():
        close(sum(r['grads'][name] for r in ranks), grad)
    for name, buf in ref['buffers'].items():
        for r in ranks:
            close(r['buffers'][name], buf)
    assert all('not supported' in r['double_backward'] for r in ranks)


def test_double_backward_refuses_group_statistics():
    """The Functions' double backward (utils.plain_backward) recomputes with
    local statistics: after a forward over a process group it stops with
    the fix instead of a wrong gradient; without a group it runs."""
    from transxnet_mm.ops.utils import plain_backward
    x = torch.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match=r'norm_cfg=dict\(type="BN"\)'):
        plain_backward(torch.sin, SimpleNamespace(
            group=object(), needs_input_grad=(True, )), (x, ), torch.ones(2))
    grad, = plain_backward(torch.sin, SimpleNamespace(
        group=None, needs_input_grad=(True, )), (x, ), torch.ones(2))
    torch.testing.assert_close(grad, torch.cos(x))
