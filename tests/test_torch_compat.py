"""transxnet_mm.utils.compat: each newer-torch API and its torch 2.1 fallback.

The fallbacks are exercised on the installed torch by hiding the newer API
(monkeypatch) and must give the answer the newer API gives. On a torch that
lacks the newer API (2.1, tools/run_tests_torch21.sh) they run as they are.
"""
import argparse
import glob
import os.path as osp
import re
import types

import pytest
import torch
from helpers import ROOT

from transxnet_mm.utils import compat as torch_compat
from transxnet_mm.utils.compat import (autocast_enabled, is_compiling,
                                       safe_globals)


def _compiled_flag() -> bool:
    """is_compiling() as seen from inside torch.compile (no graph break)."""
    torch._dynamo.reset()
    return torch.compile(lambda x: x + is_compiling(), backend='eager',
                         fullgraph=True)(torch.zeros(())).item() == 1


def test_is_compiling_eager_and_compiled():
    assert is_compiling() is False
    assert _compiled_flag()


def test_is_compiling_without_torch_compiler_is_compiling(monkeypatch):
    """torch 2.1/2.2: no torch.compiler.is_compiling; torch._dynamo's.
    (Newer torch._dynamo.is_compiling calls torch.compiler's, so the API is
    hidden only while the fallback is picked.)"""
    with monkeypatch.context() as hidden:
        hidden.delattr(torch.compiler, 'is_compiling', raising=False)
        picked = torch_compat._pick_is_compiling()
    assert picked is torch_compat._dynamo_is_compiling
    monkeypatch.setattr(torch_compat, '_is_compiling', picked)
    assert is_compiling() is False
    assert _compiled_flag()


# torch >= 2.4 warns that the per-device functions (the fallback) are
# deprecated.
@pytest.mark.filterwarnings('ignore:torch.is_autocast_cpu_enabled')
@pytest.mark.parametrize('hide', [False, True])
def test_autocast_enabled(hide, monkeypatch):
    if hide:
        # torch < 2.4, as torch_compat sees it: torch.is_autocast_enabled()
        # is CUDA's and takes no argument. (Not patched in torch itself,
        # whose torch.autocast calls the newer form.)
        takes_device = torch_compat._AUTOCAST_TAKES_DEVICE

        def is_autocast_enabled(*args):
            if args:
                raise TypeError('is_autocast_enabled() takes no arguments '
                                f'({len(args)} given)')
            return (torch.is_autocast_enabled('cuda')
                    if takes_device else torch.is_autocast_enabled())

        old_torch = types.SimpleNamespace(
            is_autocast_enabled=is_autocast_enabled,
            is_autocast_cpu_enabled=torch.is_autocast_cpu_enabled)
        monkeypatch.setattr(torch_compat, 'torch', old_torch)
        monkeypatch.setattr(torch_compat, '_AUTOCAST_TAKES_DEVICE',
                            torch_compat._pick_autocast_takes_device())
        assert torch_compat._AUTOCAST_TAKES_DEVICE is False
    assert autocast_enabled('cpu') is False
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert autocast_enabled('cpu') is True
        assert autocast_enabled('cuda') is False
        with torch.autocast('cpu', enabled=False):
            assert autocast_enabled('cpu') is False


@pytest.fixture
def namespace_ckpt(tmp_path):
    """A timm-style checkpoint: weights plus an argparse.Namespace."""
    path = str(tmp_path / 'ckpt.pth')
    torch.save({'state_dict': {'w': torch.ones(2)},
                'args': argparse.Namespace(lr=0.1)}, path)
    return path


def _safe_load(path):
    return torch.load(path, weights_only=True)


def _allow_list() -> set:
    get = getattr(torch.serialization, 'get_safe_globals', None)
    return set(get()) if get is not None else set()


@pytest.mark.skipif(not hasattr(torch.serialization, 'add_safe_globals'),
                    reason='torch < 2.4 has no weights_only allow-list')
@pytest.mark.parametrize('hide', [(), ('safe_globals', )])
def test_safe_globals_scoped(hide, namespace_ckpt, monkeypatch):
    """torch >= 2.5 (scoped API) and torch 2.4 (process-wide
    add_safe_globals, undone on exit): allowed inside the block only, and
    the allow-list is as before afterwards."""
    for name in hide:
        monkeypatch.delattr(torch.serialization, name, raising=False)
    before = _allow_list()
    with pytest.raises(Exception, match='Weights only load failed'):
        _safe_load(namespace_ckpt)
    with safe_globals([argparse.Namespace]):
        assert _safe_load(namespace_ckpt)['args'].lr == 0.1
    assert _allow_list() == before
    with pytest.raises(Exception, match='Weights only load failed'):
        _safe_load(namespace_ckpt)


def test_safe_globals_without_allow_list(namespace_ckpt, monkeypatch):
    """torch 2.1-2.3: no allow-list at all; the block changes nothing and
    a weights_only=False load (their default) reads the file."""
    before = _allow_list()
    monkeypatch.delattr(torch.serialization, 'safe_globals', raising=False)
    monkeypatch.delattr(torch.serialization, 'add_safe_globals',
                        raising=False)
    with safe_globals([argparse.Namespace]):
        assert _allow_list() == before
        ckpt = torch.load(namespace_ckpt, weights_only=False)
    assert ckpt['args'].lr == 0.1
    with pytest.raises(Exception, match='Weights only load failed'):
        _safe_load(namespace_ckpt)


NEWER_APIS = re.compile(r'torch\.compiler\.is_compiling|'
                        r'torch\.serialization\.(add_)?safe_globals|'
                        r'torch\.is_autocast_enabled\(')


def test_package_uses_torch_compat_for_newer_apis():
    """Only torch_compat.py calls the APIs that torch 2.1 lacks."""
    offenders = []
    for path in glob.glob(osp.join(ROOT, 'transxnet_mm', '**', '*.py'),
                          recursive=True):
        if osp.samefile(path, torch_compat.__file__):
            continue
        with open(path) as f:
            for i, line in enumerate(f, 1):
                if NEWER_APIS.search(line):
                    offenders.append(f'{osp.relpath(path, ROOT)}:{i}')
    assert not offenders, offenders
