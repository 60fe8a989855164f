import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
REFERENCE = os.environ.get('TRANSXNET_REFERENCE',
                           osp.join(ROOT, '..', 'shared', 'reference'))


def pytest_configure(config):
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope='session')
def reference_dir() -> str:
    if not osp.isdir(REFERENCE):
        pytest.fail(f'The shared reference folder {REFERENCE} is missing; set '
                    f'TRANSXNET_REFERENCE to its path.')
    return REFERENCE


@pytest.fixture(scope='session')
def official_sd(reference_dir):
    """Deterministic random weights in the authors' format, per variant."""
    sys.path.insert(0, reference_dir)
    from random_official_ckpt import make_state_dict
    cache = {}

    def get(variant: str):
        if variant not in cache:
            cache[variant] = make_state_dict(
                osp.join(reference_dir, f'official_keys_{variant}.txt'))
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
