"""Loading the authors' checkpoints: formats, converter, clear errors."""
import os.path as osp
import subprocess
import sys
from unittest import mock

import pytest
import torch
from helpers import ROOT

from transxnet_mm import TransXNet
from transxnet_mm.models.utils.ckpt_convert import load_pretrained
from reference_model import reference_forward


def pretrained(path, **kwargs):
    model = TransXNet('t', init_cfg=dict(type='Pretrained', checkpoint=path,
                                         **kwargs))
    model.init_weights()
    return model.eval()


@pytest.fixture(scope='module')
def image():
    return torch.randn(1, 3, 96, 128, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize('layout', ['state_dict', 'model', 'bare'])
def test_authors_checkpoint_gives_authors_outputs(layout, official_sd, image,
                                                  tmp_path):
    sd = official_sd('t')
    path = str(tmp_path / 'transx-t.pth.tar')
    torch.save(sd if layout == 'bare' else {layout: sd}, path)
    with torch.no_grad():
        outs = pretrained(path)(image)
        expected = reference_forward(sd, image)
    for out, exp in zip(outs, expected):
        assert ((out - exp).abs().max() / exp.abs().max()) < 1e-4


def test_timm_checkpoint_with_training_args_loads(official_sd, tmp_path):
    """timm saves its argparse Namespace next to the weights; torch's safe
    weights_only loading must still read the file."""
    import argparse
    path = str(tmp_path / 'timm.pth.tar')
    torch.save({'state_dict': official_sd('t'), 'epoch': 299,
                'args': argparse.Namespace(model='transxnet_t')}, path)
    model = pretrained(path)
    assert torch.equal(model.stages[0].relative_pos_bias,
                       official_sd('t')['relative_pos_enc.0'])


def test_one_log_line_names_classifier_and_new_norms(official_sd, tmp_path):
    path = str(tmp_path / 'transx-t.pth.tar')
    torch.save({'state_dict': official_sd('t')}, path)
    model = TransXNet('t')
    logger = mock.Mock()
    with torch.no_grad():
        model.norm2.weight.fill_(3.)
    load_pretrained(model, path, logger=logger)
    assert logger.info.call_count == 1
    line = logger.info.call_args[0][0]
    assert 'left out 4 keys of the file (classifier)' in line
    assert 'norm0, norm1, norm2, norm3' in line
    assert torch.equal(model.norm2.weight, torch.ones(224))


@pytest.mark.slow
def test_converter_tool_round_trip(official_sd, tmp_path):
    src, dst = str(tmp_path / 'transx-t.pth.tar'), str(tmp_path / 'mm.pth')
    torch.save({'state_dict': official_sd('t')}, src)
    subprocess.run([sys.executable,
                    osp.join(ROOT, 'tools/model_converters/transxnet_to_mm.py'),
                    src, dst], check=True, capture_output=True)
    converted = torch.load(dst, weights_only=True)['state_dict']
    assert set(k.split('.')[0] for k in converted) == {'backbone', 'head'}
    assert converted['head.fc.weight'].shape == (1000, 448)
    via_authors = pretrained(src)
    via_mm = pretrained(dst, prefix='backbone.')
    # the same backbone either way: the classifier's GroupNorm (backbone.norm3
    # of the converted file) is left out, as the authors' dense models do
    mm_sd, ref_sd = via_mm.state_dict(), via_authors.state_dict()
    assert mm_sd.keys() == ref_sd.keys()
    for k in ref_sd:
        assert torch.equal(mm_sd[k], ref_sd[k]), k
    assert torch.equal(mm_sd['norm3.weight'], torch.ones(448))
    assert not torch.equal(converted['backbone.norm3.weight'],
                           torch.ones(448))


def test_wrong_variant_is_named(official_sd, tmp_path):
    path = str(tmp_path / 'transx-s.pth.tar')
    torch.save({'state_dict': official_sd('s')}, path)
    with pytest.raises(ValueError, match=r'holds TransXNet-S .*backbone is '
                       r'TransXNet-T'):
        pretrained(path)


def test_missing_backbone_weights_are_listed(official_sd, tmp_path):
    sd = dict(official_sd('t'))
    for k in [k for k in sd if k.startswith('network.4.8.')]:
        del sd[k]  # the last block of stage 3
    path = str(tmp_path / 'partial.pth')
    torch.save({'state_dict': sd}, path)
    with pytest.raises(ValueError, match=r'lacks \d+ of the .*stages\.2\.'
                       r'blocks\.8\.'):
        pretrained(path)


def test_truncated_file_is_named(official_sd, tmp_path):
    path = tmp_path / 'truncated.pth'
    torch.save({'state_dict': official_sd('t')}, path)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match='could not be read as a PyTorch '
                       'checkpoint'):
        pretrained(str(path))


def test_missing_file_names_the_config_key(tmp_path):
    with pytest.raises(FileNotFoundError, match='init_cfg.checkpoint'):
        pretrained(str(tmp_path / 'nowhere.pth'))


def test_full_model_checkpoint_needs_prefix(official_sd, tmp_path):
    model = TransXNet('t')
    sd = {'neck.conv.weight': torch.zeros(1)}
    sd.update({f'backbone.{k}': v for k, v in model.state_dict().items()})
    path = str(tmp_path / 'detector.pth')
    torch.save({'state_dict': sd, 'meta': {}}, path)
    loaded = pretrained(path, prefix='backbone.').state_dict()
    for k, v in model.state_dict().items():
        assert torch.equal(loaded[k], v), k
    with pytest.raises(ValueError, match="No key .* prefix 'head.'"):
        pretrained(path, prefix='head.')
