"""One registration serves mmdet, mmseg and mmpretrain configs."""
import subprocess
import sys

import pytest
from mmengine.config import Config
from mmengine.registry import DefaultScope

CONFIG = """
custom_imports = dict(imports=['transxnet_mm'], allow_failed_imports=False)
model = dict(type='TransXNet', arch='t', out_indices=(1, 2, 3))
"""


def test_import_needs_neither_mmdet_nor_mmseg():
    """Only mmpretrain's APIs are imported, where mmpretrain is installed,
    to register our model names with its ModelHub (apis/hub.py)."""
    code = ('import sys, transxnet_mm; '
            'bad = [m for m in ("mmdet", "mmseg") '
            'if m in sys.modules]; assert not bad, bad; '
            'from mmpretrain.apis import ModelHub; '
            'assert ModelHub.has("transxnet-t_in1k"); '
            'print(transxnet_mm.__version__)')
    out = subprocess.run([sys.executable, '-c', code], check=True,
                         capture_output=True, text=True)
    assert out.stdout.strip()


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg', 'mmpretrain'])
def test_build_from_config_in_each_toolbox(scope, tmp_path):
    registry = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
    path = tmp_path / 'cfg.py'
    path.write_text(CONFIG)
    cfg = Config.fromfile(str(path))  # imports transxnet_mm
    with DefaultScope.overwrite_default_scope(scope):
        model = registry.build(cfg.model)
    assert type(model).__name__ == 'TransXNet'
    assert model.out_indices == (1, 2, 3)
