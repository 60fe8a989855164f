"""ONNX export of our detectors, segmentors and classifiers.

PyTorch's exporter (``torch.onnx.export(..., dynamo=True)``) inside
:func:`transxnet_mm.ops.exporting`, where the backbone's ops take forms that
export for any size; mmseg's integer ``Upsample`` is swapped in the exported
model only (:func:`.tasks.export_modules`).
"""
import math
import os.path as osp
from typing import List, Optional, Sequence, Tuple

import torch
from mmengine.config import Config
from torch import Tensor, nn

from ..apis import build_model
from ..ops import exporting
from .tasks import RawOutputs, Task, export_modules, task_for

OPSET = 18  # onnxruntime >= 1.16 runs it
# --verify fails above this difference from PyTorch, relative to the largest
# magnitude of each output (float32; measured: docs/deployment.md).
RTOL = 1e-4
INPUT_NAME = 'input'
DYNAMIC_AXES = {0: 'batch', 2: 'height', 3: 'width'}  # of a --dynamic file
# Smallest side: every stage keeps >= 2 rows and columns (torch.export
# specialises a side of 1).
MIN_SIDE = 64


def load_model(config: str, checkpoint: Optional[str] = None,
               cfg_options: Optional[dict] = None
               ) -> Tuple[Config, nn.Module, Task]:
    """One of our configs built for export (CPU, eval mode; random weights
    without ``checkpoint``) and its :class:`~.tasks.Task`."""
    if not osp.isfile(config):
        raise FileNotFoundError(f'Config {config} does not exist')
    if checkpoint is not None and not osp.isfile(checkpoint):
        raise FileNotFoundError(
            f'Checkpoint {checkpoint} does not exist: pass the path of a '
            f'checkpoint written by tools/train.py, or no checkpoint to '
            f'export the randomly initialised model')
    cfg = Config.fromfile(config)  # imports transxnet_mm
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    backbone = cfg.get('model', {}).get('backbone', {}).get('type')
    scope = cfg.get('default_scope')
    if backbone != 'TransXNet' or scope not in ('mmdet', 'mmseg',
                                                'mmpretrain'):
        raise ValueError(
            f'{config} is not one of our configs (model.backbone.type is '
            f'{backbone!r}, default_scope {scope!r}): export_onnx exports '
            f'TransXNet detection (mmdet), segmentation (mmseg) and '
            f'classification (mmpretrain) configs, e.g. '
            f'configs/retinanet_transxnet_t.py')
    model = build_model(cfg, checkpoint)
    return cfg, model, task_for(cfg, model)


def check_shape(shape: Sequence[int]) -> Tuple[int, int]:
    """An export size (H, W), or ValueError saying what is allowed."""
    if len(shape) != 2 or min(shape) < MIN_SIDE:
        raise ValueError(
            f'--shape takes H W, each at least {MIN_SIDE} (every stage of '
            f'TransXNet then keeps >= 2 rows and columns), got '
            f'{" ".join(map(str, shape))}')
    return int(shape[0]), int(shape[1])


def dynamic_example_size(h: int, w: int) -> Tuple[int, int]:
    """An example size for a --dynamic export near (h, w).

    With as many stride-4 tokens as 224x224 the position biases need no
    resize, which torch.export would drop from the graph: width + 32 there.
    """
    from ..models.backbones.transxnet import BIAS_IMAGE_SIZE, STEM_STRIDE

    tokens = math.ceil(BIAS_IMAGE_SIZE / STEM_STRIDE)**2
    if math.ceil(h / STEM_STRIDE) * math.ceil(w / STEM_STRIDE) == tokens:
        return h, w + 32
    return h, w


def export(model: nn.Module, task: Task, example: Tensor, out: str,
           dynamic: bool = False) -> List[str]:
    """Write ``task``'s raw network of ``model`` to ``out`` (ONNX), with
    ``example``'s shape fixed unless ``dynamic``; the part that runs in
    PyTorch (RoI heads) is saved beside it. Returns the output names."""
    names = task.output_names()
    dims = ({k: torch.export.Dim.DYNAMIC for k in DYNAMIC_AXES}, )
    if dynamic and example.shape[0] == 1:
        # torch.export specialises dimensions of size 1: a dynamic batch
        # needs an example of 2 (the image and its mirror image).
        example = torch.cat([example, example.flip(-1)])
    with torch.no_grad(), exporting(), export_modules(model):
        torch.onnx.export(
            RawOutputs(model, task).eval(), (example, ), out, dynamo=True,
            opset_version=OPSET, input_names=[INPUT_NAME],
            output_names=names, dynamic_shapes=dims if dynamic else None,
            external_data=False, verbose=False)
    state = task.torch_state()
    if state is not None:
        torch.save(state, torch_state_path(out))
    return names


def torch_state_path(onnx_file: str) -> str:
    """Where the weights of the part that runs in PyTorch are saved."""
    return osp.splitext(onnx_file)[0] + '.torch_part.pth'


def load_torch_state(model: nn.Module, onnx_file: str) -> None:
    """Load what :func:`export` saved beside ``onnx_file`` into ``model``."""
    path = torch_state_path(onnx_file)
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'{path} does not exist: export_onnx.py writes the weights of '
            f'the RoI heads, which run in PyTorch, beside {onnx_file}; '
            f'export again or copy that file along')
    state = torch.load(path, map_location='cpu')
    # Each saved part (the RoI heads) is loaded whole; the rest is in ONNX.
    for part in sorted({k.split('.', 1)[0] for k in state}):
        getattr(model, part).load_state_dict({
            k[len(part) + 1:]: v for k, v in state.items()
            if k.startswith(part + '.')})
