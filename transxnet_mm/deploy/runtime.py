"""Inference of the exported files with onnxruntime (CPU), and their
comparison with PyTorch."""
import os.path as osp
from typing import List, Sequence, Tuple

import torch
from torch import Tensor, nn

from .tasks import Task, prepare


class OnnxModel:
    """An onnxruntime CPU session of an exported file."""

    def __init__(self, path: str, threads: int = 2) -> None:
        import onnxruntime as ort

        if not osp.isfile(path):
            raise FileNotFoundError(f'ONNX file {path} does not exist')
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            path, options, providers=['CPUExecutionProvider'])
        self.input = self.session.get_inputs()[0]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def __call__(self, inputs: Tensor) -> List[Tensor]:
        shape = self.input.shape
        for axis, (want, got) in enumerate(zip(shape, inputs.shape)):
            if isinstance(want, int) and want != got:
                raise ValueError(
                    f'This ONNX file takes inputs of shape {tuple(shape)} '
                    f'(exported without --dynamic), got '
                    f'{tuple(inputs.shape)} (axis {axis}): export with '
                    f'--dynamic, or with --shape for this size')
        outs = self.session.run(
            None, {self.input.name: inputs.contiguous().numpy()})
        return [torch.from_numpy(o) for o in outs]


def differences(ref: Sequence[Tensor],
                out: Sequence[Tensor]) -> Tuple[float, float]:
    """Largest absolute difference, and relative to each output's largest
    magnitude (elementwise ratios blow up near zero)."""
    if len(ref) != len(out):
        raise ValueError(f'{len(out)} outputs, expected {len(ref)}')
    abs_diff = rel_diff = 0.
    for r, o in zip(ref, out):
        if r.shape != o.shape:
            raise ValueError(f'Output shape {tuple(o.shape)} differs from '
                             f"PyTorch's {tuple(r.shape)}")
        d = float((r.float() - o.float()).abs().max())
        abs_diff = max(abs_diff, d)
        rel_diff = max(rel_diff, d / max(float(r.abs().max()), 1e-12))
    return abs_diff, rel_diff


def torch_outputs(model: nn.Module, task: Task,
                  inputs: Tensor) -> List[Tensor]:
    """The raw outputs in PyTorch (eager, our default path)."""
    with torch.no_grad():
        return task.raw_forward(model, inputs)


def verify_sizes(h: int, w: int) -> List[Tuple[int, int, int]]:
    """(batch, H, W) of a --dynamic check, unlike the export's size."""
    return [(2, h + 32, w + 64), (1, h + 37, w + 19)]


def predict_onnx(session: OnnxModel, task: Task, images: Sequence[str]):
    """Data samples with predictions for ``images``, the network run in
    onnxruntime."""
    inputs, data_samples = prepare(task.model, images)
    with torch.no_grad():
        return task.postprocess(session(inputs), data_samples)
