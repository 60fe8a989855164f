"""The argument handling tools/train.py and tools/test.py share
(transxnet_mm.utils.cli)."""
import os
import os.path as osp

import pytest
from helpers import load_tool

from transxnet_mm.utils.cli import parse_config, tool_parser


@pytest.fixture
def tiny_config(tmp_path):
    path = tmp_path / 'tiny_cfg.py'
    path.write_text('model = dict(depth=1)\n')
    return str(path)


def test_load_config_applies_the_common_arguments(tiny_config, monkeypatch):
    monkeypatch.delenv('LOCAL_RANK', raising=False)
    parser = tool_parser('x')
    _, cfg = parse_config(parser, [tiny_config, '--local-rank', '3'])
    assert cfg.work_dir == osp.join('./work_dirs', 'tiny_cfg')
    assert cfg.launcher == 'none' and cfg.model.depth == 1
    assert os.environ['LOCAL_RANK'] == '3'
    _, cfg = parse_config(parser, [
        tiny_config, '--work-dir', 'elsewhere', '--cfg-options',
        'model.depth=4', 'work_dir=ignored', '--launcher', 'pytorch'])
    assert (cfg.work_dir, cfg.model.depth, cfg.launcher) == \
        ('elsewhere', 4, 'pytorch')


@pytest.mark.parametrize('tool,extra', [
    ('train', ['--amp', '--resume']),
    ('test', ['ckpt.pth', '--show-dir', 'vis']),
])
def test_both_tools_take_the_common_and_their_own_arguments(
        tool, extra, tiny_config):
    parser = load_tool(f'{tool}.py').build_parser()
    args, cfg = parse_config(parser, [tiny_config] + extra +
                             ['--cfg-options', 'model.depth=2'])
    assert args.cfg_options == {'model.depth': 2} and cfg.model.depth == 2
    if tool == 'train':
        assert args.amp and args.resume == 'auto'
    else:
        assert (args.checkpoint, args.show_dir) == ('ckpt.pth', 'vis')
