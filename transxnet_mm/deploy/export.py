"""ONNX export of our detectors, segmentors and classifiers.

The exporter is PyTorch's own (``torch.onnx.export(..., dynamo=True)``,
torch.export-based, ONNX opset :data:`OPSET`), inside
:func:`transxnet_mm.ops.exporting`: the backbone's ops take their export
forms there (a dynamic depthwise conv, adaptive pooling and the bicubic
resize of the position biases, by ops that export for any size and run fast
in onnxruntime), and mmseg's integer ``Upsample`` its own
(:func:`.tasks.export_modules`). Nothing outside the exported model changes.
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

# The ONNX opset of the exported files (onnxruntime >= 1.16 runs it).
OPSET = 18


# --verify fails above this difference from PyTorch, relative to the largest
# magnitude of each output (float32; measured values: docs/deployment.md).
RTOL = 1e-4


# Input names and the dynamic axes of a --dynamic file.
INPUT_NAME = 'input'


DYNAMIC_AXES = {0: 'batch', 2: 'height', 3: 'width'}


# Smallest export (and tested) side: every stage keeps >= 2 rows and columns
# (a side of 1 would be specialised by torch.export).
MIN_SIDE = 64


def load_model(config: str, checkpoint: Optional[str] = None,
               cfg_options: Optional[dict] = None
               ) -> Tuple[Config, nn.Module, Task]:
    """One of our configs built for export (:func:`transxnet_mm.apis.
    build_model`: CPU, eval mode, the checkpoint's weights or the random
    initialisation), and its :class:`~.tasks.Task`.

    ValueError / FileNotFoundError name a missing file, a config whose
    backbone is not TransXNet, or a model kind that does not export.
    """
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

    At an input of 224x224 pixels (in the stride-4 stage's token count) the
    position biases need no resize, so torch.export would record the graph
    without the resize and the file would fail at every other size; there
    the width is moved by 32.
    """
    from ..models.backbones.transxnet import BIAS_IMAGE_SIZE, STEM_STRIDE

    tokens = math.ceil(BIAS_IMAGE_SIZE / STEM_STRIDE)**2
    if math.ceil(h / STEM_STRIDE) * math.ceil(w / STEM_STRIDE) == tokens:
        return h, w + 32
    return h, w


def export(model: nn.Module, task: Task, example: Tensor, out: str,
           dynamic: bool = False) -> List[str]:
    """Write ``task``'s raw network of ``model`` to ``out`` (ONNX, opset
    :data:`OPSET`): the input batch ``example``'s shape fixed, or with
    batch, height and width free (``dynamic``). For a two-stage detector the
    RoI heads' weights go beside it (:func:`torch_state_path`). Returns the
    output names."""
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
    # The file holds whole parts of the model (the RoI heads): each part is
    # loaded completely, the others (in the ONNX file) are left alone.
    for part in sorted({k.split('.', 1)[0] for k in state}):
        getattr(model, part).load_state_dict({
            k[len(part) + 1:]: v for k, v in state.items()
            if k.startswith(part + '.')})
