"""pytest hooks and fixtures. The paper's numbers are in ``paper.py``, the
shared helpers in ``helpers.py``."""
import importlib.util
import os
import os.path as osp
import sys

import pytest
import torch
from helpers import REFERENCE, ROOT, run_tool
# Every test's peak memory, bounded and reported (the fixture and hook).
from memory_guard import (peak_memory, pytest_collection_finish,  # noqa: F401
                          pytest_terminal_summary)

# The analysis tools' helpers (benchmark_utils), as the tools import them.
sys.path.insert(0, osp.join(ROOT, 'tools', 'analysis_tools'))


def pytest_configure(config):
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    config.addinivalue_line(
        'markers', 'slow: exports, subprocess trainings, compiling, large '
        'sizes, the S and B variants (the fast tier: pytest -m "not slow")')


# Parameters that name one of the paper's variants ('t', 's', 'b') or one of
# our configs or models ('retinanet_transxnet_s', 'transxnet/..._b_...').
VARIANT_PARAMS = ('arch', 'variant', 'name')


def pytest_collection_modifyitems(config, items):
    """Tests run for every variant take T in the fast tier; the same checks
    on S and B (larger models, the same code) are marked slow."""
    import re
    for item in items:
        params = getattr(getattr(item, 'callspec', None), 'params', {})
        for key in VARIANT_PARAMS:
            value = params.get(key)
            if isinstance(value, str) and (value in ('s', 'b') or re.search(
                    r'transxnet[_-][sb](_|\.py$|$)', value)):
                item.add_marker(pytest.mark.slow)
                break


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
