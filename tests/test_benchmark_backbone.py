"""tools/analysis_tools/benchmark_backbone.py: its cells measure what they
say on CPU, the paper's Table XI protocol and --amp run, and the CUDA
branches of the measurement run with the GPU's counters mocked (nothing
here has a GPU)."""
import subprocess
import sys

import pytest
import torch
from helpers import AUTHORS_FILE, ROOT, load_tool, needs_authors_file

from transxnet_mm import TransXNet
from benchmark_utils import measure_step


@pytest.fixture(scope='module')
def tool():
    return load_tool('analysis_tools', 'benchmark_backbone.py')


def _bytes(model: torch.nn.Module) -> int:
    return sum(t.nbytes for t in [*model.parameters(), *model.buffers()])


@pytest.mark.parametrize('mode,amp,norm', [
    ('eval', None, 'BN'), ('train', 'bf16', 'BN'), ('eval', 'fp16', 'BN'),
    ('train', None, 'SyncBN')])
def test_cell_times_and_memory(tool, mode, amp, norm):
    """Times for each run, a peak above the weights and input, and the total
    that adds them (Table XI's memory); SyncBN reverted as in one process."""
    res = tool.run_cell('t', 64, 64, 2, mode, 'default', 2, 2, 'cpu', amp,
                        norm)
    assert len(res['times']) == 2 and res['median'] > 0
    assert res['peak_mb'] > 0
    resident = _bytes(TransXNet('t')) + 2 * 3 * 64 * 64 * 4
    assert res['total_mb'] == pytest.approx(res['peak_mb'] + resident / 2**20)


def test_cuda_branch_with_the_counters_mocked(monkeypatch):
    """On a GPU: the peak counter is reset before the two measured steps, the
    peak is taken above what was allocated, and every timed step is
    synchronised."""
    calls = []
    monkeypatch.setattr(torch.cuda, 'reset_peak_memory_stats',
                        lambda: calls.append('reset'))
    monkeypatch.setattr(torch.cuda, 'memory_allocated', lambda: 100 * 2**20)
    monkeypatch.setattr(torch.cuda, 'max_memory_allocated',
                        lambda: 350 * 2**20)
    monkeypatch.setattr(torch.cuda, 'synchronize',
                        lambda: calls.append('sync'))
    res = measure_step(lambda: calls.append('step'), 3, 4, 'cuda:0')
    assert res['peak_mb'] == 250 and res['total_mb'] == 350
    assert calls[:3] == ['reset', 'step', 'step']
    # 2 more warm-up steps, a sync, then each timed step and its sync
    assert calls[3:] == ['step', 'step', 'sync'] + ['step', 'sync'] * 3
    assert len(res['times']) == 3


@pytest.mark.parametrize('argv,expected', [
    ([], (['224x224x8', '512x512x2', '800x1216x1'], ['eval', 'train'])),
    (['--protocol', 'table11'], (['224x224x128'], ['eval'])),
    (['--protocol', 'table11', '--sizes', '224x224x32'],
     (['224x224x32'], ['eval'])),
])
def test_protocol_sets_the_cells(tool, monkeypatch, argv, expected):
    monkeypatch.setattr(sys, 'argv', ['benchmark_backbone.py', *argv])
    args = tool.parse_args()
    assert (args.sizes, args.modes) == expected


def test_no_gpu_is_named(tool, monkeypatch, capsys):
    if torch.cuda.is_available():
        pytest.skip('a GPU is visible')
    monkeypatch.setattr(sys, 'argv', ['benchmark_backbone.py', '--device',
                                      'cuda'])
    with pytest.raises(SystemExit):
        tool.parse_args()
    assert 'no GPU is visible' in capsys.readouterr().err


@pytest.mark.slow
@needs_authors_file
def test_table11_prints_images_per_second_next_to_the_paper():
    """The command a user runs on a GPU, at a size CPU can take."""
    out = subprocess.run(
        [sys.executable, 'tools/analysis_tools/benchmark_backbone.py',
         '--protocol', 'table11', '--sizes', '64x64x2', '--archs', 't',
         '--runs', '1', '--authors-model', AUTHORS_FILE, '--amp', 'bf16'],
        capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert 'autocast bf16' in out and 'Table XI' in out
    header, _, row = [line.split('|')[1:-1] for line in out.splitlines()
                      if line.startswith('|')]
    values = dict(zip((c.strip() for c in header), (c.strip() for c in row)))
    assert values['paper img/s, MB'] == '857, 2252'
    for impl in ('authors', 'ours'):
        assert float(values[f'{impl} img/s']) > 0
        assert float(values[f'{impl} total MB']) > \
            float(values[f'{impl} peak MB'])


@needs_authors_file
def test_saved_activations_tool(monkeypatch, capsys):
    """tools/analysis_tools/saved_activations.py: ours by module, the
    authors' total beside it; with the BatchNorm kernels off it keeps
    more."""
    tool = load_tool('analysis_tools', 'saved_activations.py')
    totals = []
    for extra in (['--authors-model', AUTHORS_FILE],
                  ['--off', 'gelu_bn', 'layer_scale']):
        monkeypatch.setattr(sys, 'argv', ['saved_activations.py', '--shape',
                                          '64', '64', *extra])
        tool.main()
        out = capsys.readouterr().out
        totals.append(float(out.split(' MiB saved')[0].split()[-1]))
        assert '| stages.blocks.mlp' in out  # MS-FFN or its parts
        assert ("the authors' file" in out) == (extra[0] != '--off')
    assert totals[1] > totals[0]
    monkeypatch.setattr(sys, 'argv', ['saved_activations.py', '--off',
                                      'pointwise'])
    with pytest.raises(SystemExit):  # argparse names the kernels
        tool.main()
    assert 'gelu_bn' in capsys.readouterr().err
