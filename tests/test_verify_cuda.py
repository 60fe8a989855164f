"""tools/analysis_tools/verify_cuda.py, the GPU verification command: its
checks run here on the CPU (the same code, another device), its CUDA-only
parts are named when no GPU is visible."""
import os
import subprocess
import sys

import pytest
import torch
from helpers import ROOT

from transxnet_mm.ops import KERNELS


@pytest.fixture(scope='module')
def tool():
    # imported by name (tools/analysis_tools is on the path, conftest.py):
    # its DDP workers are pickled by reference
    import verify_cuda
    return verify_cuda


@pytest.mark.parametrize('name', sorted(KERNELS))
def test_each_kernel_is_checked_against_pytorch(tool, name):
    """The check takes the kernel (it is exercised) and finds PyTorch's
    outputs, gradients and statistics."""
    result = tool.check_kernel(name, 'cpu')
    assert result['exercised'], result
    assert result['ok'], result
    assert result['mode'] == ('inference' if name == 'inplace'
                              else 'training')


def test_a_wrong_kernel_fails_the_check(tool, monkeypatch):
    """A kernel that computes something else is caught."""
    from transxnet_mm.ops import layer_scale
    real = layer_scale._folded
    monkeypatch.setattr(layer_scale, '_folded',
                        lambda *a, **k: real(*a, **k) * 1.01)
    result = tool.check_kernel('layer_scale', 'cpu')
    assert result['exercised'] and not result['ok']


@pytest.mark.skipif(torch.cuda.is_available(), reason='a GPU is visible')
def test_without_a_gpu_it_says_so(tool):
    with pytest.raises(SystemExit, match='No GPU is visible'):
        tool.main(['--out', 'unused'])


def test_dry_run_lists_the_benchmarks(tool, capsys):
    assert tool.main(['--dry-run', '--authors-model', 'AUTHORS.py']) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4
    assert all('--device cuda' in line for line in lines)
    assert sum('benchmark_train.py configs/' in line for line in lines) == 3
    assert '--protocol table11' in lines[-1]
    assert all('AUTHORS.py' in line for line in lines)


@pytest.mark.slow
def test_ddp_check_in_two_processes(tool):
    """The two-process check, with gloo and BN on the CPU."""
    result = tool.check_ddp(backend='gloo', norm='BN', port=29561)
    assert result['ok'], result


@pytest.mark.slow
def test_benchmark_subprocesses_get_the_kernels_on_cuda():
    """The variable the benchmark runs are given lets every kernel decide
    as on a device of its row (here: as for CUDA)."""
    code = ('import torch, transxnet_mm; from transxnet_mm.ops import '
            'decisions; m = transxnet_mm.TransXNet("t").eval(); '
            'x = torch.randn(1, 3, 64, 64)\n'
            'with torch.no_grad():\n'
            '    print(any(d.taken for d in decisions(m, x, device="cuda")))')
    for value, expected in (('cuda', 'True'), ('', 'False')):
        out = subprocess.run(
            [sys.executable, '-c', code], cwd=ROOT, text=True,
            capture_output=True,
            env={**os.environ, 'TRANSXNET_MM_VERIFY_ON': value})
        assert out.stdout.strip() == expected, out.stderr[-2000:]
