import glob
import importlib.util
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
# The authors' checkpoint key lists, the generator of deterministic random
# weights in their format and their TransXNet-T outputs on those weights:
# data the test suite owns (see reference/README.md).
REFERENCE = osp.join(ROOT, 'tests', 'reference')
CONFIGS = osp.join(ROOT, 'configs')


def config_file(name: str) -> str:
    """The path of one of our configs by its file name (``.py`` optional):
    configs/<folder>/<name>.py, the folders grouped as mmdet's are."""
    name = name if name.endswith('.py') else name + '.py'
    found = glob.glob(osp.join(CONFIGS, '*', name))
    assert len(found) == 1, f'{name}: {found}'
    return found[0]


def pytest_configure(config):
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    config.addinivalue_line(
        'markers', 'slow: exports, subprocess trainings, compiling, large '
        'sizes (the fast tier: pytest -m "not slow")')


@pytest.fixture(scope='session')
def reference_dir() -> str:
    return REFERENCE


def _random_official_ckpt():
    """tests/reference/random_official_ckpt.py, imported by path (kept
    byte-identical to the file it was vendored from)."""
    spec = importlib.util.spec_from_file_location(
        'random_official_ckpt', osp.join(REFERENCE, 'random_official_ckpt.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='session')
def official_sd():
    """Deterministic random weights in the authors' format, per variant."""
    make_state_dict = _random_official_ckpt().make_state_dict
    cache = {}

    def get(variant: str):
        if variant not in cache:
            cache[variant] = make_state_dict(
                osp.join(REFERENCE, f'official_keys_{variant}.txt'))
        return cache[variant]

    return get


@pytest.fixture(scope='session')
def coco_sample() -> str:
    """The real COCO val2017 sample (10 images, official annotations),
    fetched once into data/coco_sample/ by our own tool."""
    out = osp.join(ROOT, 'data', 'coco_sample')
    run_tool(['tools/dataset_converters/fetch_coco_sample.py', '--out', out])
    return out


def run_tool(args, **kwargs) -> str:
    """Run one of our tools (a path relative to the repo, then its
    arguments) with this Python, from the repo root; assert it succeeded
    and return what it printed (stdout and stderr)."""
    out = subprocess.run([sys.executable] + list(args), cwd=ROOT, text=True,
                         capture_output=True, **kwargs)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-3000:]
    return log


def fixed_batch_losses(model, batch, lr: float, weight_decay: float,
                       steps: int = 6) -> list:
    """Train ``model`` (an mmdet/mmseg model) on one batch for ``steps``
    AdamW steps; the losses, for checking that they are finite and fall."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr,
                            weight_decay=weight_decay)
    losses = []
    for _ in range(steps):
        data = model.data_preprocessor(batch, True)
        loss, _ = model.parse_losses(model(**data, mode='loss'))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses
