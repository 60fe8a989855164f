"""ONNX export of our detectors, segmentors and classifiers, and inference
of the exported files with onnxruntime.

What goes into the ONNX file is the network from the preprocessed image
batch to its raw outputs; what runs outside it, in PyTorch, is the config's
own test pipeline and data preprocessor before, and the toolbox's own
post-processing after (:class:`Task`):

* RetinaNet: backbone, neck and head convs in ONNX (``cls_score_i``,
  ``bbox_pred_i`` per FPN level); ``bbox_head.predict_by_feat`` after
  (anchors, box decoding, score threshold, NMS, rescale).
* Mask R-CNN: backbone, neck and RPN convs in ONNX (``feat_i``,
  ``rpn_cls_score_i``, ``rpn_bbox_pred_i``); ``rpn_head.predict_by_feat``
  and ``roi_head.predict`` after, with the RoI heads' weights saved beside
  the file.
* Semantic FPN: backbone, neck and decode head in ONNX (``seg_logits`` at
  1/4 of the input); ``decode_head.predict_by_feat`` and
  ``postprocess_result`` after (resize, crop, argmax).
* Classifiers: the whole network in ONNX (``cls_score``, logits);
  ``head._get_predictions`` after (softmax).

The exporter is PyTorch's own (``torch.onnx.export(..., dynamo=True)``,
torch.export-based, ONNX opset :data:`OPSET`). Two ops of the backbone and
one of mmseg do not export for a dynamic input as they are, and one runs
slowly in onnxruntime; :func:`export_friendly_ops` swaps them, during the
export only, for numerically equivalent formulations.
"""
import math
import os.path as osp
from contextlib import ExitStack, contextmanager
from typing import Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmengine.config import Config
from torch import Tensor, nn
from torch.nn.modules.utils import _pair

from .ops import use_kernels

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


def _is_symbolic(*values) -> bool:
    return any(isinstance(v, torch.SymInt) for v in values)


def _depthwise_by_taps(x: Tensor, weight: Tensor, bias: Optional[Tensor],
                       padding: Tuple[int, int]) -> Tensor:
    """Stride-1 depthwise convolution of (1, G, H, W) with G symbolic: each
    channel's KxK patches by one convolution with constant one-hot kernels
    (channels as samples), times its weights, summed over the taps. The
    same products as the convolution, summed in another order, and no
    symbolic ``group``."""
    K1, K2 = weight.shape[2:]
    taps = torch.eye(K1 * K2, dtype=x.dtype, device=x.device)
    patches = F.conv2d(x.reshape(-1, 1, *x.shape[2:]),
                       taps.reshape(K1 * K2, 1, K1, K2), None, 1, padding)
    out = (patches * weight.reshape(-1, K1 * K2, 1, 1)).sum(1)
    if bias is not None:
        out = out + bias.reshape(-1, 1, 1)
    return out.unsqueeze(0)


def _pool_matrix(n, out: int, like: Tensor) -> Tensor:
    """(out, n) averaging matrix of PyTorch's adaptive average pooling along
    one axis of length ``n``: row i averages ``floor(i n / out)`` to
    ``ceil((i + 1) n / out) - 1``."""
    i = torch.arange(out, device=like.device)
    start = (i * n) // out
    end = ((i + 1) * n + out - 1) // out
    pos = torch.arange(n, device=like.device)
    mask = (pos >= start[:, None]) & (pos < end[:, None])
    return mask.to(like.dtype) / (end - start).to(like.dtype)[:, None]


def _cubic_taps(n, out, like: Tensor) -> Tuple[Tensor, Tensor]:
    """Source indices (4, out) and weights (4, out) of PyTorch's bicubic
    resize (align_corners False, A = -0.75, edges clamped) of an axis of
    length ``n`` to ``out``."""
    A = -0.75
    # As PyTorch's kernel computes it: the scale in float32, then
    # scale * (i + 0.5) - 0.5 rounded once (a fused multiply-add). Rounded
    # twice, the source positions of a 60800-row output move by up to 1e-4.
    scale = torch.full((), n, dtype=torch.float32, device=like.device) / out
    src = (scale.double() * (torch.arange(
        out, device=like.device, dtype=torch.float64) + 0.5) - 0.5).float()
    floor = src.floor()
    t = (src - floor).to(like.dtype)

    def near(d):  # |d| <= 1
        return ((A + 2) * d - (A + 3)) * d * d + 1

    def far(d):  # 1 < |d| < 2
        return ((A * d - 5 * A) * d + 8 * A) * d - 4 * A

    weights = torch.stack([far(t + 1), near(t), near(1 - t), far(2 - t)])
    taps = torch.arange(-1, 3, device=like.device)[:, None]
    index = (floor.long() + taps).clamp(min=0)
    return torch.minimum(index, torch.full_like(index, n - 1)), weights


def _bicubic_by_taps(x: Tensor, size: Sequence) -> Tensor:
    """``F.interpolate(x, size, mode='bicubic')`` of a 4-D ``x``,
    separably: 4 gathered rows per output row, then a product with the
    (out, in) matrix of the columns. onnxruntime's cubic ``Resize`` took 20
    of RetinaNet-T's 27 s at 800x1216; these are gathers and one MatMul."""
    (h, w), (oh, ow) = x.shape[-2:], size
    index, weights = _cubic_taps(h, oh, x)
    x = sum(x.index_select(-2, index[c]) * weights[c][:, None]
            for c in range(4))
    index, weights = _cubic_taps(w, ow, x)
    cols = torch.arange(w, device=x.device)
    matrix = ((index[..., None] == cols).to(x.dtype) *
              weights[..., None]).sum(0)
    return x @ matrix.T


@contextmanager
def _integer_upsample_sizes() -> Iterator[None]:
    """mmseg's ``Upsample`` with an integer scale factor keeps a symbolic
    output size (see :func:`export_friendly_ops`)."""
    try:
        from mmseg.models.utils import Upsample, resize
    except ImportError:  # mmseg is optional
        yield
        return
    forward = Upsample.forward

    def forward_(self, x: Tensor) -> Tensor:
        scale = self.scale_factor
        if (not self.size and isinstance(scale, float) and scale.is_integer()
                and _is_symbolic(*x.shape[-2:])):
            size = [side * int(scale) for side in x.shape[-2:]]
            return resize(x, size, None, self.mode, self.align_corners)
        return forward(self, x)

    Upsample.forward = forward_
    try:
        yield
    finally:
        Upsample.forward = forward


@contextmanager
def export_friendly_ops() -> Iterator[None]:
    """Export-time rewrites of ops whose plain form has no dynamic ONNX
    equivalent, or a slow one; numerically equivalent (float32 rounding).
    The first three are taken only when a size is symbolic (a dynamic
    export), else the op runs as it is.

    * Depthwise convolution whose group count is symbolic: IDConv folds the
      batch into the groups (``groups = B * C``), and ONNX's ``Conv`` needs
      a constant ``group``. Rewritten as a sum over kernel taps
      (:func:`_depthwise_by_taps`).
    * mmseg's ``Upsample`` (Semantic FPN's head) computes its output size
      as ``int(side * 2.0)``, which fixes the example's size in the graph;
      with an integer scale, ``side * 2`` (the same value) stays symbolic.
    * Adaptive average pooling to a size other than 1 of a map of symbolic
      size (IDConv's 7x7 pool): the exporter's decomposition bakes the
      window boundaries of the example size in (wrong at other sizes).
      Rewritten as two products with averaging matrices built from the
      actual size (:func:`_pool_matrix`).

    * Bicubic resizing (the position biases; exported whether or not a
      size is symbolic): onnxruntime runs the cubic ``Resize`` slowly, at
      detection sizes most of a RetinaNet's time (docs/benchmarks.md).
      Rewritten separably as gathers and a product
      (:func:`_bicubic_by_taps`), with PyTorch's weights.

    They are keyed on the ``torch.nn.functional`` op, not on a module, and
    restored on exit. Inside, :func:`transxnet_mm.ops.use_kernels` is off:
    the backbone runs plain PyTorch ops only.
    """
    conv2d, pool2d, interpolate = (F.conv2d, F.adaptive_avg_pool2d,
                                   F.interpolate)

    def conv2d_(input, weight, bias=None, stride=1, padding=0, dilation=1,
                groups=1):
        if (_is_symbolic(groups) and weight.shape[1] == 1
                and _pair(stride) == (1, 1) and _pair(dilation) == (1, 1)
                and not isinstance(padding, str)):
            return _depthwise_by_taps(input, weight, bias, _pair(padding))
        return conv2d(input, weight, bias, stride, padding, dilation, groups)

    def adaptive_avg_pool2d_(input, output_size):
        size = _pair(output_size)
        H, W = input.shape[-2:]
        if not _is_symbolic(H, W) or None in size or size == (1, 1):
            return pool2d(input, output_size)
        return (_pool_matrix(H, size[0], input) @ input
                @ _pool_matrix(W, size[1], input).T)

    def interpolate_(input, size=None, scale_factor=None, mode='nearest',
                     align_corners=None, *args, **kwargs):
        if (mode == 'bicubic' and not align_corners and size is not None
                and scale_factor is None and input.dim() == 4
                and not any(args) and not kwargs.get('antialias')):
            return _bicubic_by_taps(input, _pair(size))
        return interpolate(input, size, scale_factor, mode, align_corners,
                           *args, **kwargs)

    F.conv2d, F.adaptive_avg_pool2d, F.interpolate = (
        conv2d_, adaptive_avg_pool2d_, interpolate_)
    try:
        with ExitStack() as stack:
            stack.enter_context(_integer_upsample_sizes())
            stack.enter_context(use_kernels(False))
            yield
    finally:
        F.conv2d, F.adaptive_avg_pool2d, F.interpolate = (conv2d, pool2d,
                                                          interpolate)


class RawOutputs(nn.Module):
    """The part of ``model`` that goes into the ONNX file: a preprocessed
    batch in, the task's raw output tensors out (:attr:`Task.outputs`)."""

    def __init__(self, model: nn.Module, task: 'Task') -> None:
        super().__init__()
        self.model, self.task = model, task

    def forward(self, inputs: Tensor) -> Tuple[Tensor, ...]:
        return tuple(self.task.raw_forward(self.model, inputs))


class Task:
    """How one kind of model is split between ONNX and PyTorch.

    ``raw_forward`` is what is exported, ``postprocess`` turns the raw
    outputs (from onnxruntime or PyTorch alike) into the toolbox's data
    samples with the toolbox's own post-processing.
    """
    scope = ''

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def output_names(self) -> List[str]:
        raise NotImplementedError

    def raw_forward(self, model: nn.Module, inputs: Tensor) -> List[Tensor]:
        raise NotImplementedError

    def postprocess(self, outputs: Sequence[Tensor], data_samples: list):
        raise NotImplementedError

    def torch_state(self) -> Optional[dict]:
        """Weights the post-processing needs (saved beside the ONNX file),
        or None."""
        return None


class SingleStageDetection(Task):
    """mmdet single-stage detectors (RetinaNet): head outputs per level."""
    scope = 'mmdet'

    def output_names(self) -> List[str]:
        n = len(self.model.bbox_head.prior_generator.strides)
        return ([f'cls_score_{i}' for i in range(n)] +
                [f'bbox_pred_{i}' for i in range(n)])

    def raw_forward(self, model, inputs):
        cls_scores, bbox_preds = model.bbox_head(model.extract_feat(inputs))
        return list(cls_scores) + list(bbox_preds)

    def postprocess(self, outputs, data_samples):
        n = len(outputs) // 2
        results = self.model.bbox_head.predict_by_feat(
            list(outputs[:n]), list(outputs[n:]),
            batch_img_metas=[d.metainfo for d in data_samples], rescale=True)
        return self.model.add_pred_to_datasample(data_samples, results)


class TwoStageDetection(Task):
    """mmdet two-stage detectors (Mask R-CNN): FPN features and RPN head
    outputs from ONNX; proposals and the RoI heads (RoIAlign, box and mask
    heads) in PyTorch."""
    scope = 'mmdet'

    def output_names(self) -> List[str]:
        n = len(self.model.rpn_head.prior_generator.strides)
        return ([f'feat_{i}' for i in range(self.model.neck.num_outs)] +
                [f'rpn_cls_score_{i}' for i in range(n)] +
                [f'rpn_bbox_pred_{i}' for i in range(n)])

    def raw_forward(self, model, inputs):
        feats = model.extract_feat(inputs)
        cls_scores, bbox_preds = model.rpn_head(feats)
        return list(feats) + list(cls_scores) + list(bbox_preds)

    def postprocess(self, outputs, data_samples):
        n = self.model.neck.num_outs
        k = (len(outputs) - n) // 2
        feats = tuple(outputs[:n])
        proposals = self.model.rpn_head.predict_by_feat(
            list(outputs[n:n + k]), list(outputs[n + k:]),
            batch_img_metas=[d.metainfo for d in data_samples], rescale=False)
        results = self.model.roi_head.predict(feats, proposals, data_samples,
                                              rescale=True)
        return self.model.add_pred_to_datasample(data_samples, results)

    def torch_state(self) -> Optional[dict]:
        return {f'roi_head.{k}': v
                for k, v in self.model.roi_head.state_dict().items()}


class Segmentation(Task):
    """mmseg encoder-decoders ('whole' test mode): decode head logits."""
    scope = 'mmseg'

    def output_names(self) -> List[str]:
        return ['seg_logits']

    def raw_forward(self, model, inputs):
        return [model.decode_head(model.extract_feat(inputs))]

    def postprocess(self, outputs, data_samples):
        seg_logits = self.model.decode_head.predict_by_feat(
            outputs[0], [d.metainfo for d in data_samples])
        return self.model.postprocess_result(seg_logits, data_samples)


class Classification(Task):
    """mmpretrain image classifiers: class scores (logits)."""
    scope = 'mmpretrain'

    def output_names(self) -> List[str]:
        return ['cls_score']

    def raw_forward(self, model, inputs):
        return [model.head(model.extract_feat(inputs))]

    def postprocess(self, outputs, data_samples):
        return self.model.head._get_predictions(outputs[0], data_samples)


def _task_for(cfg: Config, model: nn.Module) -> Task:
    """The :class:`Task` of a built model, or ValueError naming what is not
    supported."""
    scope = cfg.get('default_scope')
    if scope == 'mmdet':
        if hasattr(model, 'roi_head') and hasattr(model, 'rpn_head'):
            return TwoStageDetection(model)
        if hasattr(model, 'bbox_head'):
            return SingleStageDetection(model)
    elif scope == 'mmseg':
        mode = (model.test_cfg or {}).get('mode', 'whole')
        if mode == 'whole':
            return Segmentation(model)
        raise ValueError(
            f"Only mmseg's 'whole' test mode exports (one forward per "
            f"image); this config sets model.test_cfg.mode={mode!r}. Set "
            f"--cfg-options model.test_cfg.mode=whole")
    elif scope == 'mmpretrain':
        if hasattr(model, 'head'):
            return Classification(model)
    raise ValueError(
        f'{type(model).__name__} ({scope} config) is not a model '
        f'export_onnx handles: RetinaNet-like single-stage and Mask R-CNN-'
        f'like two-stage mmdet detectors, mmseg encoder-decoders and '
        f'mmpretrain image classifiers')


def load_model(config: str, checkpoint: Optional[str] = None,
               cfg_options: Optional[dict] = None
               ) -> Tuple[Config, nn.Module, Task]:
    """Build one of our configs for export, on CPU and in eval mode, with
    the checkpoint's weights, or the random initialisation without one.

    ValueError / FileNotFoundError name a missing file, a config whose
    backbone is not TransXNet, or a model kind that does not export.
    """
    from mmengine.registry import MODELS, init_default_scope
    from mmengine.model.utils import revert_sync_batchnorm
    from mmengine.runner import load_checkpoint

    from .compat import trusted_local_checkpoints

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
    init_default_scope(scope)
    # The weights come from the checkpoint (or stay random), never from the
    # backbone's ImageNet init_cfg.
    cfg.model.backbone.init_cfg = None
    model = revert_sync_batchnorm(MODELS.build(cfg.model))
    model.dataset_meta = _default_meta(cfg)
    if checkpoint is not None:
        with trusted_local_checkpoints():
            ckpt = load_checkpoint(model, checkpoint, map_location='cpu',
                                   strict=True)
        model.dataset_meta.update(
            {k.lower(): v
             for k, v in ckpt.get('meta', {}).get('dataset_meta', {}).items()})
    model.cfg = cfg
    model.eval()
    return cfg, model, _task_for(cfg, model)


def _default_meta(cfg: Config) -> dict:
    """Class names and palette of the config's test dataset class (what
    the toolboxes' demos draw with when a checkpoint carries none)."""
    scope = cfg.default_scope
    registry = __import__(f'{scope}.registry', fromlist=['DATASETS'])
    dataset = registry.DATASETS.get(cfg.test_dataloader.dataset.type)
    return dict(getattr(dataset, 'METAINFO', None) or {})


def test_pipeline(cfg: Config) -> list:
    """The config's own test pipeline, without annotation loading."""
    scope = cfg.default_scope
    if scope == 'mmseg':
        steps = cfg.test_pipeline
    else:
        steps = cfg.test_dataloader.dataset.pipeline
    return [t for t in steps if 'LoadAnnotations' not in t['type']]


def prepare(model: nn.Module, images: Sequence[str]) -> Tuple[Tensor, list]:
    """Images through the config's test pipeline and the model's data
    preprocessor: the network's input batch and the data samples (image
    metas) the post-processing needs."""
    from mmengine.dataset import Compose
    from mmengine.registry import DefaultScope

    # the config's own registry scope, whichever another model set last
    with DefaultScope.overwrite_default_scope(model.cfg.get('default_scope')):
        pipeline = Compose(test_pipeline(model.cfg))
    batch = dict(inputs=[], data_samples=[])
    for i, path in enumerate(images):
        if not osp.isfile(path):
            raise FileNotFoundError(f'Image {path} does not exist')
        data = pipeline(dict(img_path=path, img_id=i))
        batch['inputs'].append(data['inputs'])
        batch['data_samples'].append(data['data_samples'])
    data = model.data_preprocessor(batch, False)
    return data['inputs'], data['data_samples']


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
    from .models.transxnet import BIAS_IMAGE_SIZE, STEM_STRIDE

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
    with torch.no_grad(), export_friendly_ops():
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
    """Largest absolute difference, and largest relative to the output's
    largest magnitude (elementwise ratios blow up near zero), over all
    outputs."""
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
    """(batch, H, W) of a --dynamic check: other sizes than the export's,
    one a multiple of 32 with 2 images, one not with 1."""
    return [(2, h + 32, w + 64), (1, h + 37, w + 19)]


def predict_onnx(session: OnnxModel, task: Task, images: Sequence[str]):
    """Data samples with predictions for ``images``: the config's
    preprocessing, the ONNX network in onnxruntime, the toolbox's
    post-processing."""
    inputs, data_samples = prepare(task.model, images)
    with torch.no_grad():
        return task.postprocess(session(inputs), data_samples)


def predict_torch(task: Task, images: Sequence[str]):
    """The same in PyTorch alone (the model's own ``predict``)."""
    inputs, data_samples = prepare(task.model, images)
    with torch.no_grad():
        return task.model.predict(inputs, data_samples)


def build_visualizer(model: nn.Module):
    """The config's visualizer with the model's class names (as
    tools/image_demo.py builds it)."""
    from mmengine.registry import VISUALIZERS

    visualizer = VISUALIZERS.build(model.cfg.visualizer)
    visualizer.dataset_meta = model.dataset_meta
    return visualizer
