"""Inference time of an exported network in onnxruntime (CPU) against our
PyTorch path and the authors' backbone file, one table from one run.

    python tools/deployment/benchmark_onnx.py [--onnx-dir DIR] [--threads 2]
        [--runs 5] [--cases retinanet fpn] [--authors PATH]

For each case (RetinaNet-T at 800x1216, Semantic FPN-T at 512x512, random
weights: the time does not depend on them) it takes the --dynamic ONNX file
CONFIG_NAME.onnx from --onnx-dir (exported there first if missing; the
export takes minutes) and times, on one random input batch of 1,
the same raw network (:mod:`transxnet_mm.deploy`; no pre- or
post-processing): onnxruntime, our PyTorch model (eager, no gradients), and
the same model with the authors' backbone (``authors_transxnet_dense.py``
from the shared reference folder) in place of ours. Prints the median of
``--runs`` runs after one warm-up, in ms, as a Markdown table.
"""
import argparse
import importlib.util
import os
import os.path as osp
import sys

import torch
from torch import nn

from transxnet_mm import deploy

# the timing helpers of the analysis tools
sys.path.insert(0, osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                            'analysis_tools'))
from benchmark_utils import median, median_time  # noqa: E402

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CASES = {
    # TransXNet-T configs (the authors' backbone is built as 't').
    'retinanet': ('configs/retinanet_transxnet_t.py', (800, 1216)),
    'fpn': ('configs/fpn_transxnet_t_ade20k.py', (512, 512)),
}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--onnx-dir', default='work_dirs/onnx',
                        help='where the --dynamic files are (or go)')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--runs', type=int, default=5)
    parser.add_argument('--cases', nargs='+', default=list(CASES),
                        choices=list(CASES))
    parser.add_argument('--authors', default=osp.join(
        ROOT, '..', 'shared', 'reference', 'authors_transxnet_dense.py'),
        help="the authors' dense TransXNet file (skipped if missing)")
    return parser.parse_args()


class AuthorsBackbone(nn.Module):
    """The authors' dense TransXNet giving the outputs our config asks for
    (their model always returns the four stages)."""

    def __init__(self, module, arch: str, out_indices) -> None:
        super().__init__()
        self.net = module.TransXNet(arch=arch, fork_feat=True)
        self.out_indices = out_indices

    def forward(self, x):
        outs = self.net(x)
        return tuple(outs[i] for i in self.out_indices)


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    authors = None
    if osp.isfile(args.authors):
        spec = importlib.util.spec_from_file_location('authors_dense',
                                                      args.authors)
        authors = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(authors)
    rows = []
    for case in args.cases:
        config, (h, w) = CASES[case]
        _, model, task = deploy.load_model(osp.join(ROOT, config))
        x = torch.rand(1, 3, h, w)
        path = osp.join(args.onnx_dir,
                        osp.splitext(osp.basename(config))[0] + '.onnx')
        if not osp.isfile(path):
            os.makedirs(args.onnx_dir, exist_ok=True)
            deploy.export(model, task, x, path, dynamic=True)
        session = deploy.OnnxModel(path, args.threads)
        times = dict(onnxruntime=median(
            median_time(lambda: session(x), args.runs, 1)))
        times['ours'] = median(median_time(
            lambda: deploy.torch_outputs(model, task, x), args.runs, 1))
        if authors is not None:
            bb = model.backbone
            model.backbone = AuthorsBackbone(authors, 't',
                                             bb.out_indices).eval()
            times['authors'] = median(median_time(
                lambda: deploy.torch_outputs(model, task, x), args.runs, 1))
            model.backbone = bb
        rows.append((config, f'1x3x{h}x{w}', times))
    print(f'Median of {args.runs} runs (ms), CPU, {args.threads} threads, '
          f'torch {torch.__version__}, onnxruntime '
          f'{__import__("onnxruntime").__version__}')
    print('| config | input | onnxruntime | ours (PyTorch) | authors '
          '(PyTorch) |')
    print('|---|---|---|---|---|')
    for config, shape, t in rows:
        cells = [f'{t[k] * 1e3:.0f}' if k in t else 'n/a'
                 for k in ('onnxruntime', 'ours', 'authors')]
        print(f'| `{config}` | {shape} | ' + ' | '.join(cells) + ' |')


if __name__ == '__main__':
    main()
