import os
import os.path as osp
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
