"""How each kind of model is split between the ONNX file and PyTorch.

The ONNX file holds the network from the preprocessed batch to its raw
outputs; the config's test pipeline and data preprocessor before it, and the
toolbox's own post-processing after it, run in PyTorch (:class:`Task`).
"""
import os.path as osp
from contextlib import contextmanager
from typing import Iterator, List, Optional, Sequence, Tuple

import torch
from mmengine.config import Config
from torch import Tensor, nn


class RawOutputs(nn.Module):
    """The part of ``model`` that goes into the ONNX file."""

    def __init__(self, model: nn.Module, task: 'Task') -> None:
        super().__init__()
        self.model, self.task = model, task

    def forward(self, inputs: Tensor) -> Tuple[Tensor, ...]:
        return tuple(self.task.raw_forward(self.model, inputs))


class Task:
    """How one kind of model is split between ONNX and PyTorch:
    ``raw_forward`` is exported, ``postprocess`` turns raw outputs (from
    onnxruntime or PyTorch) into the toolbox's data samples."""
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
        """Weights the post-processing needs (saved beside the ONNX file)."""
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
    outputs from ONNX; proposals and the RoI heads in PyTorch."""
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


def task_for(cfg: Config, model: nn.Module) -> Task:
    """The :class:`Task` of a built model, or ValueError."""
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


class IntegerUpsample(nn.Module):
    """mmseg's ``Upsample`` by an integer factor for a dynamic export: its
    ``int(side * 2.0)`` would fix the size in the graph, ``side * 2`` stays
    symbolic."""

    def __init__(self, upsample: nn.Module) -> None:
        super().__init__()
        self.upsample = upsample

    def forward(self, x: Tensor) -> Tensor:
        from mmseg.models.utils import resize
        up = self.upsample
        size = [side * int(up.scale_factor) for side in x.shape[-2:]]
        return resize(x, size, None, up.mode, up.align_corners)


@contextmanager
def export_modules(model: nn.Module) -> Iterator[None]:
    """Inside, ``model``'s modules that do not export for a dynamic input
    are swapped for their export form (:class:`IntegerUpsample`)."""
    try:
        from mmseg.models.utils import Upsample
    except ImportError:  # mmseg is optional
        yield
        return
    swapped = []
    for parent in model.modules():
        for name, child in parent.named_children():
            scale = getattr(child, 'scale_factor', None)
            if (isinstance(child, Upsample) and not child.size
                    and isinstance(scale, float) and scale.is_integer()):
                swapped.append((parent, name, child))
    for parent, name, child in swapped:
        setattr(parent, name, IntegerUpsample(child))
    try:
        yield
    finally:
        for parent, name, child in swapped:
            setattr(parent, name, child)


def test_pipeline(cfg: Config) -> list:
    """The config's own test pipeline, without annotation loading."""
    steps = (cfg.test_pipeline if cfg.default_scope == 'mmseg' else
             cfg.test_dataloader.dataset.pipeline)
    return [t for t in steps if 'LoadAnnotations' not in t['type']]


def prepare(model: nn.Module, images: Sequence[str]) -> Tuple[Tensor, list]:
    """Images through the config's test pipeline and data preprocessor: the
    input batch and the data samples the post-processing needs."""
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


def predict_torch(task: Task, images: Sequence[str]):
    """The same in PyTorch alone (the model's own ``predict``)."""
    inputs, data_samples = prepare(task.model, images)
    with torch.no_grad():
        return task.model.predict(inputs, data_samples)
