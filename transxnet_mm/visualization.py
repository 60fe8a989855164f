"""Effective receptive fields and Grad-CAM of TransXNet models, and their
figures (the paper's Figs. 2, 6, 7 and 8).

Used by ``tools/analysis_tools/visualize_erf.py`` and ``visualize_cam.py``;
this module holds the logic, the tools only parse arguments and print.

* Layer names: one table, :data:`SHORT_NAMES`, of the names the paper's
  figures use (``stage1``..``stage4``, ``dmixer.local`` / ``.global`` /
  ``.fused``); anything else is a module name of the model, with or without
  ``backbone.`` (:func:`resolve_layers`).
* ERF (Luo et al. 2016, as RepLKNet's ``visualize_erf.py`` computes it): the
  gradient of the centre of a layer's output map (summed over channels) with
  respect to the input image, absolute, summed over the colour channels and
  averaged over images (:func:`erf_maps`); its score is the area ratio of the
  smallest centred square holding t of the (log-scaled) contribution
  (:func:`erf_score`).
* Grad-CAM (Selvaraju et al. 2017) over forward hooks (:func:`grad_cam`).

Forward hooks make the in-place shortcuts of :mod:`transxnet_mm.ops` step
aside, and gradients are recorded anyway, so the maps are those of plain
PyTorch ops (``tests/test_visualization.py`` checks the ERF against
``use_kernels(False)``).
"""
import copy
import difflib
import os
import os.path as osp
import re
import tempfile
from contextlib import contextmanager
from typing import (Callable, Dict, Iterable, Iterator, List, NamedTuple,
                    Optional, Sequence, Tuple)

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.config import Config
from torch import Tensor, nn

IMAGE_EXTS = ('.jpg', '.jpeg', '.png', '.bmp')
# Thresholds of the ERF score: the share of the contribution (RepLKNet's).
ERF_THRESHOLDS = (0.2, 0.3, 0.5, 0.99)
# ImageNet mean / std (RGB), for a model without a data preprocessor.
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)

# The paper's names -> our module paths inside the backbone. {last} is the
# last stage's index, {block} the index of its last block (read from the
# built model, so any depth table works).
SHORT_NAMES: Dict[str, Tuple[str, str]] = {
    'stage1': ('stages.0', 'output of stage 1 (stride 4)'),
    'stage2': ('stages.1', 'output of stage 2 (stride 8)'),
    'stage3': ('stages.2', 'output of stage 3 (stride 16)'),
    'stage4': ('stages.3', 'output of stage 4 (stride 32)'),
    'dmixer.local': ('stages.{last}.blocks.{block}.token_mixer.local_unit',
                     'local branch (IDConv output) of the last D-Mixer'),
    'dmixer.global': ('stages.{last}.blocks.{block}.token_mixer.global_unit',
                      'global branch (OSRA output) of the last D-Mixer'),
    'dmixer.fused': ('stages.{last}.blocks.{block}.token_mixer',
                     'the last D-Mixer output (after STE and its residual)'),
}


class Layer(NamedTuple):
    """A layer to look at: the name the user gave, its module path in the
    model, and the module."""
    name: str
    path: str
    module: nn.Module


# --------------------------------------------------------------------------
# Models and weights


def build_model(cfg: Config, checkpoint: Optional[str] = None,
                device: str = 'cpu') -> Tuple[nn.Module, str, str]:
    """The config's model in eval mode (plain BatchNorm), its toolbox scope,
    and one line saying where the weights come from.

    Built with the toolbox's registry (the config's ``default_scope``), as
    :func:`transxnet_mm.analysis.build_model` does, without the backbone's
    ``init_cfg`` (its authors' checkpoint path is not needed to visualise).
    Without ``checkpoint`` the weights are the random initialisation.
    """
    from .analysis import build_model as build_eval_model

    cfg = copy.deepcopy(cfg)
    if cfg.get('default_scope') == 'mmpretrain':
        # mmpretrain keeps the preprocessor at the top level of its configs
        # (mmpretrain.apis.init_model moves it into the model the same way);
        # the training batch augments (mixup) are not needed.
        cfg.model.setdefault('data_preprocessor',
                             cfg.get('data_preprocessor', None))
        cfg.model.pop('train_cfg', None)
    if checkpoint is not None and not osp.isfile(checkpoint):
        raise FileNotFoundError(f'Checkpoint {checkpoint} does not exist.')
    model, scope = build_eval_model(cfg, device)
    if checkpoint is None:
        note = 'random weights (no checkpoint given)'
    else:
        note = load_weights(model, checkpoint, scope)
    return model.to(device).eval(), scope, note


def load_weights(model: nn.Module, checkpoint: str, scope: str) -> str:
    """Load ``checkpoint`` into ``model``; returns one line saying what was
    loaded.

    An authors' file (``transx-t.pth.tar``, ...) is converted to our key names
    in a temporary file first, as ``tools/test.py`` does (the classifier head
    too for an mmpretrain model). Any other file is an MMEngine checkpoint
    (ours). Every backbone weight must be in the file, with its shape, except
    output norms the file lacks (a classifier's checkpoint in a detector),
    which keep weight 1, bias 0 as in the authors' dense models; the parts
    the file does not hold (a detector's neck and head) are named.
    """
    from .models.convert import official_to_mm_checkpoint

    with tempfile.TemporaryDirectory(prefix='transxnet_') as tmp:
        converted = osp.join(tmp, 'converted.pth')
        summary = official_to_mm_checkpoint(
            checkpoint, converted, with_head=scope == 'mmpretrain')
        loaded, absent = _load_state(model, converted if summary
                                     else checkpoint, checkpoint)
    note = (f"weights: the authors' checkpoint {checkpoint}, converted on "
            f'the fly ({summary})' if summary else
            f'weights: {checkpoint} ({loaded} tensors)')
    if absent:
        note += f'; not in the file, left as initialised: {", ".join(absent)}'
    return note


def _load_state(model: nn.Module, path: str,
                name: str) -> Tuple[int, List[str]]:
    """Load the weights of ``path`` (our key names) that ``model`` has,
    checked as :func:`load_weights` says; the number loaded and the model's
    top-level parts (or output norms) the file lacks."""
    from mmengine.runner.checkpoint import CheckpointLoader

    from .compat import trusted_local_checkpoints
    from .models.convert import describe_arch, extract_state_dict

    with trusted_local_checkpoints():
        ckpt = CheckpointLoader.load_checkpoint(path, map_location='cpu')
    state = {re.sub(r'^module\.', '', k): v
             for k, v in extract_state_dict(ckpt).items()}
    own = model.state_dict()
    mismatched = [k for k, v in state.items()
                  if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if mismatched:
        guess, desc = describe_arch({k[len('backbone.'):]: v
                                     for k, v in state.items()
                                     if k.startswith('backbone.')})
        looks = f'TransXNet-{guess.upper()} ({desc})' if guess else desc
        raise ValueError(
            f'{name} does not fit this config: its backbone looks like '
            f'{looks}, the model is {describe_model(model)}; first '
            f'mismatched keys: {mismatched[:3]}.')
    is_out_norm = re.compile(r'backbone\.norm\d+\.').match
    missing = [k for k in own if k.startswith('backbone.') and k not in state
               and not is_out_norm(k)]
    if missing:
        total = sum(k.startswith('backbone.') for k in own)
        raise ValueError(
            f'{name} lacks {len(missing)} of the {total} backbone weights of '
            f'this config, e.g. {missing[:3]}: not a checkpoint of this model '
            f"(an authors' transx-*.pth.tar is recognised by its keys).")
    loadable = {k: v for k, v in state.items() if k in own}
    # output norms the file lacks keep their initial weight 1, bias 0
    loadable.update((k, v) for k, v in own.items()
                    if is_out_norm(k) and k not in state)
    model.load_state_dict(loadable, strict=False)
    absent = sorted({'.'.join(k.split('.')[:2]) if is_out_norm(k)
                     else k.split('.')[0] for k in own if k not in state})
    return sum(k in own for k in state), absent


def describe_model(model: nn.Module) -> str:
    """'TransXNet-T' (or the backbone's class name) for figure titles."""
    backbone, _ = find_backbone(model)
    name = type(backbone).__name__
    arch = getattr(backbone, 'arch', None)
    for key, setting in getattr(backbone, 'arch_settings', {}).items():
        if len(key) == 1 and setting == arch:
            return f'{name}-{key.upper()}'
    return name


def find_backbone(model: nn.Module) -> Tuple[nn.Module, str]:
    """The TransXNet backbone of ``model`` (or ``model`` itself) and its
    module-path prefix (``'backbone.'`` or ``''``)."""
    backbone = getattr(model, 'backbone', None)
    if isinstance(backbone, nn.Module):
        return backbone, 'backbone.'
    return model, ''


def input_normalisation(model: nn.Module) -> Tuple[Tensor, Tensor, bool]:
    """Mean and std (3, 1, 1) of the model's data preprocessor, and whether
    the network sees RGB (the preprocessor converts mmcv's BGR to RGB)."""
    dp = getattr(model, 'data_preprocessor', None)
    mean, std = getattr(dp, 'mean', None), getattr(dp, 'std', None)
    if mean is None or std is None:
        mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    flags = [getattr(dp, a) for a in ('_channel_conversion', 'to_rgb',
                                      'channel_conversion') if hasattr(dp, a)]
    rgb = any(flags) if flags else True
    return mean.detach().float().cpu(), std.detach().float().cpu(), rgb


@contextmanager
def tool_errors() -> Iterator[None]:
    """A missing file or a bad argument (FileNotFoundError, ValueError from
    this module or the checkpoint loaders) ends a tool with its message
    instead of a traceback."""
    try:
        yield
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f'error: {e}') from None


# --------------------------------------------------------------------------
# Layer names


def short_layer_paths(model: nn.Module) -> Dict[str, str]:
    """:data:`SHORT_NAMES` resolved to module paths of ``model`` (the
    stage and block indices read from its backbone)."""
    backbone, prefix = find_backbone(model)
    stages = getattr(backbone, 'stages', None)
    if not isinstance(stages, nn.ModuleList) or not len(stages):
        return {}
    last = len(stages) - 1
    block = len(stages[last].blocks) - 1
    paths = {}
    for name, (template, _) in SHORT_NAMES.items():
        path = template.format(last=last, block=block)
        if path.split('.')[1].isdigit() and int(path.split('.')[1]) > last:
            continue  # a stageK beyond this backbone's stages
        paths[name] = prefix + path
    return paths


def accepted_names_help(model: Optional[nn.Module] = None) -> str:
    """The accepted short names with their meaning (and paths, given the
    model), for help texts and errors."""
    paths = short_layer_paths(model) if model is not None else {}
    lines = []
    for name, (_, meaning) in SHORT_NAMES.items():
        where = f' = {paths[name]}' if name in paths else ''
        lines.append(f'  {name:<14} {meaning}{where}')
    return '\n'.join(lines)


def resolve_layers(model: nn.Module, names: Sequence[str]) -> List[Layer]:
    """The modules behind ``names``: a short name of :data:`SHORT_NAMES` or
    a module name of ``model`` (``backbone.`` may be left out, or added for a
    bare backbone). Duplicates are dropped.

    Raises ValueError listing the accepted short names and the closest module
    names for a name that matches nothing.
    """
    modules = dict(model.named_modules())
    short = short_layer_paths(model)
    _, prefix = find_backbone(model)
    layers: List[Layer] = []
    for name in dict.fromkeys(names):
        candidates = [short[name]] if name in short else [name]
        if name not in short:
            if prefix and not name.startswith(prefix):
                candidates.append(prefix + name)
            if not prefix and name.startswith('backbone.'):
                candidates.append(name[len('backbone.'):])
        path = next((c for c in candidates if c in modules and c), None)
        if path is None:
            raise ValueError(unknown_layer_message(name, model))
        layers.append(Layer(name, path, modules[path]))
    return layers


def unknown_layer_message(name: str, model: nn.Module) -> str:
    """Why ``name`` is not a layer: the accepted names and close module
    names."""
    modules = [n for n, _ in model.named_modules() if n]
    short = list(short_layer_paths(model)) or list(SHORT_NAMES)
    _, prefix = find_backbone(model)
    pool = short + modules + [m[len(prefix):] for m in modules
                              if prefix and m.startswith(prefix)]
    close = difflib.get_close_matches(name, pool, n=5, cutoff=0.6)
    hint = (f'\nClose module names: {", ".join(close)}' if close else '')
    example = short_layer_paths(model).get('dmixer.fused', 'backbone.stages.3')
    return (f'Unknown layer {name!r}. Accepted short names:\n'
            f'{accepted_names_help(model)}\n'
            f'or any module name of the model, with or without '
            f"'backbone.' (e.g. {example}; see model.named_modules())."
            f'{hint}')


def check_inside(layers: Sequence[Layer], model: nn.Module) -> None:
    """Every layer is part of the backbone (the ERF runs the backbone
    only), else ValueError."""
    backbone, prefix = find_backbone(model)
    inside = {id(m) for m in backbone.modules()}
    for layer in layers:
        if id(layer.module) not in inside:
            raise ValueError(
                f'Layer {layer.name!r} ({layer.path}) is outside the backbone'
                f'; the ERF runs the backbone only, so name a layer under '
                f'{prefix or "the model"!r}.')


# --------------------------------------------------------------------------
# Images


def list_images(folder: str, num: Optional[int] = None) -> List[str]:
    """The first ``num`` images (.jpg, .jpeg, .png, .bmp; sorted by name) of
    ``folder``, or a single image file. FileNotFoundError for a missing path,
    ValueError for a folder without images."""
    if osp.isfile(folder):
        return [folder]
    if not osp.isdir(folder):
        raise FileNotFoundError(f'Image folder {folder} does not exist.')
    files = sorted(osp.join(folder, f) for f in os.listdir(folder)
                   if f.lower().endswith(IMAGE_EXTS))
    if not files:
        raise ValueError(f'No image ({", ".join(IMAGE_EXTS)}) in {folder}.')
    return files[:num] if num else files


def load_image(path: str, shape: Sequence[int]) -> np.ndarray:
    """The image at ``path`` as RGB uint8, resized to ``shape`` (H, W)
    (PIL bicubic, as the classification configs' test transform)."""
    from PIL import Image

    if not osp.isfile(path):
        raise FileNotFoundError(f'Image {path} does not exist.')
    with Image.open(path) as img:
        img = img.convert('RGB').resize((int(shape[1]), int(shape[0])),
                                        Image.BICUBIC)
        return np.asarray(img).copy()


def to_input(image: np.ndarray, mean: Tensor, std: Tensor, rgb: bool = True,
             device: str = 'cpu') -> Tensor:
    """An RGB uint8 (H, W, 3) image as the network's normalised
    (1, 3, H, W) float input."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()
    if not rgb:
        x = x.flip(0)
    return ((x - mean) / std).unsqueeze(0).to(device)


# --------------------------------------------------------------------------
# Hooks


class _Captured(Exception):
    """Raised by the last hook: the rest of the forward is not needed."""


def _feature_map(layer: Layer, output) -> Tensor:
    """A hooked module's output as one (B, C, H, W) tensor (the first of a
    tuple), or ValueError."""
    if isinstance(output, (tuple, list)):
        output = next((o for o in output if isinstance(o, Tensor)), None)
    if not isinstance(output, Tensor) or output.dim() != 4:
        what = (f'shape {tuple(output.shape)}' if isinstance(output, Tensor)
                else type(output).__name__)
        raise ValueError(
            f'Layer {layer.name!r} ({layer.path}) outputs {what}, not a '
            f'(B, C, H, W) feature map.')
    return output


@contextmanager
def capture(layers: Sequence[Layer],
            stop: bool = False) -> Iterator[Dict[str, Tensor]]:
    """Forward hooks that keep each layer's output (its first call) in the
    yielded dict; with ``stop`` the forward is cut short (by
    :class:`_Captured`, which :func:`run_until_captured` catches) once all
    are kept."""
    outputs: Dict[str, Tensor] = {}

    def hook_for(layer: Layer) -> Callable:
        def hook(module: nn.Module, args, output) -> None:
            if layer.name in outputs:
                return
            outputs[layer.name] = _feature_map(layer, output)
            if stop and len(outputs) == len(layers):
                raise _Captured
        return hook

    handles = [layer.module.register_forward_hook(hook_for(layer))
               for layer in layers]
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


def run_until_captured(module: nn.Module, x: Tensor,
                       layers: Sequence[Layer]) -> Dict[str, Tensor]:
    """Run ``module(x)`` up to the last of ``layers``; their outputs."""
    with capture(layers, stop=True) as outputs:
        try:
            module(x)
        except _Captured:
            pass
    missing = [layer.name for layer in layers if layer.name not in outputs]
    if missing:
        raise ValueError(f'Layer(s) {missing} were not called in the forward '
                         f'of {type(module).__name__}.')
    return outputs


@contextmanager
def frozen_parameters(model: nn.Module) -> Iterator[None]:
    """No parameter requires grad inside (only input gradients are wanted:
    the weight gradients would be computed for nothing)."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


# --------------------------------------------------------------------------
# Effective receptive field


def erf_maps(backbone: nn.Module, layers: Sequence[Layer],
             inputs: Iterable[Tensor],
             on_image: Optional[Callable[[], None]] = None
             ) -> Dict[str, np.ndarray]:
    """The ERF of each layer: |d(centre of its output, summed over channels)
    / d(input)| summed over the input channels and averaged over ``inputs``
    ((1, 3, H, W) each), one (H, W) float64 map per layer name.

    The backbone runs in eval mode (BatchNorm with its running statistics),
    as Luo et al. and RepLKNet do; one forward per image, one backward per
    layer. ``on_image`` is called after each image (a progress bar).
    """
    backbone.eval()
    sums: Dict[str, np.ndarray] = {}
    count = 0
    with frozen_parameters(backbone):
        for x in inputs:
            x = x.detach().clone().requires_grad_(True)
            outputs = run_until_captured(backbone, x, layers)
            for i, layer in enumerate(layers):
                out = outputs[layer.name]
                h, w = out.shape[-2:]
                centre = out[:, :, h // 2, w // 2].sum()
                grad, = torch.autograd.grad(
                    centre, x, retain_graph=i < len(layers) - 1)
                contribution = grad.abs().sum(dim=(0, 1)).double().cpu()
                if layer.name in sums:
                    sums[layer.name] += contribution.numpy()
                else:
                    sums[layer.name] = contribution.numpy().copy()
            del outputs
            count += 1
            if on_image is not None:
                on_image()
    if not count:
        raise ValueError('No image to compute the ERF on.')
    return {name: total / count for name, total in sums.items()}


def log_scaled(erf: np.ndarray) -> np.ndarray:
    """log10(1 + ERF) rescaled to a maximum of 1, as RepLKNet shows and
    scores its ERFs (magnitudes differ by orders between layers)."""
    data = np.log10(np.asarray(erf, dtype=np.float64) + 1)
    peak = data.max()
    return data / peak if peak > 0 else data


def erf_score(erf: np.ndarray, thresholds: Sequence[float] = ERF_THRESHOLDS,
              log: bool = True) -> List[float]:
    """The high-contribution area ratio per threshold t: the area, as a
    fraction of the input, of the smallest square centred on the map's
    centre (clipped to the map) that holds more than t of the total
    contribution, on :func:`log_scaled` data by default (RepLKNet's
    ``analyze_erf.py``). Larger means a larger ERF."""
    data = log_scaled(erf) if log else np.asarray(erf, dtype=np.float64)
    h, w = data.shape
    total = data.sum()
    cy, cx = h // 2, w // 2
    ratios = []
    for t in thresholds:
        ratio = 1.0
        if total > 0:
            for r in range(max(h, w)):
                y0, y1 = max(cy - r, 0), min(cy + r + 1, h)
                x0, x1 = max(cx - r, 0), min(cx + r + 1, w)
                if (y1 - y0) * (x1 - x0) == h * w:
                    break
                if data[y0:y1, x0:x1].sum() > t * total:
                    ratio = (y1 - y0) * (x1 - x0) / (h * w)
                    break
        ratios.append(ratio)
    return ratios


def erf_table(maps: Dict[str, np.ndarray], layers: Sequence[Layer],
              thresholds: Sequence[float] = ERF_THRESHOLDS) -> str:
    """The ERF score of every layer as a text table."""
    head = ['layer', 'module'] + [f'{t:.0%}' for t in thresholds]
    rows = [[layer.name, layer.path] +
            [f'{r:.4f}' for r in erf_score(maps[layer.name], thresholds)]
            for layer in layers]
    widths = [max(len(str(row[i])) for row in [head] + rows)
              for i in range(len(head))]
    lines = ['  '.join(c.ljust(w) for c, w in zip(row, widths)).rstrip()
             for row in [head] + rows]
    return '\n'.join(lines)


# --------------------------------------------------------------------------
# Grad-CAM


def grad_cam(model: nn.Module, layers: Sequence[Layer], x: Tensor,
             target_class: Optional[int] = None
             ) -> Tuple[Dict[str, np.ndarray], int, float]:
    """Grad-CAM of a classifier for one image ``x`` (1, 3, H, W).

    For each layer's activation A (1, C, h, w): channel weights = the mean
    over (h, w) of d(logit of the class)/dA, map = ReLU(sum_c w_c A_c),
    upsampled bilinearly to (H, W) and rescaled to [0, 1]. The class is the
    predicted top-1 unless ``target_class`` is given. Returns the maps by
    layer name, the class and its softmax probability.
    """
    model.eval()
    with frozen_parameters(model):
        x = x.detach().clone().requires_grad_(True)
        with capture(layers) as outputs:
            logits = model(x, mode='tensor')
        if isinstance(logits, (tuple, list)):
            logits = logits[-1]
        if logits.dim() != 2:
            raise ValueError(f'The model returns shape {tuple(logits.shape)}'
                             f', not (1, num_classes) class scores.')
        num_classes = logits.shape[1]
        k = int(logits[0].argmax()) if target_class is None else target_class
        if not 0 <= k < num_classes:
            raise ValueError(f'--target-class {k} is not a class of this '
                             f'model (0..{num_classes - 1}).')
        acts = [outputs[layer.name] for layer in layers]
        grads = torch.autograd.grad(logits[0, k], acts, allow_unused=True)
    prob = float(logits[0].detach().softmax(0)[k])
    cams = {}
    for layer, act, grad in zip(layers, acts, grads):
        act = act.detach()
        if grad is None:  # the class score does not depend on this layer
            grad = torch.zeros_like(act)
        weights = grad.mean(dim=(2, 3), keepdim=True)
        cam = F.relu((weights * act).sum(dim=1, keepdim=True))
        cam = F.interpolate(cam, size=x.shape[-2:], mode='bilinear',
                            align_corners=False)[0, 0].double()
        cam = cam - cam.min()
        peak = cam.max()
        cams[layer.name] = (cam / peak if peak > 0 else cam).cpu().numpy()
    return cams, k, prob


def overlay(image: np.ndarray, cam: np.ndarray,
            alpha: float = 0.5) -> np.ndarray:
    """``cam`` ([0, 1], H x W) in the jet colormap over the RGB uint8
    ``image``, blended with weight ``alpha``."""
    from matplotlib import colormaps

    heat = colormaps['jet'](np.clip(cam, 0, 1))[..., :3]
    out = (1 - alpha) * image.astype(np.float64) / 255 + alpha * heat
    return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)


# --------------------------------------------------------------------------
# Figures


def _pyplot():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def plot_erf(maps: Dict[str, np.ndarray], layers: Sequence[Layer],
             title: str, out_file: str, dpi: int = 100,
             max_cols: int = 4) -> str:
    """One panel per layer (rows of at most ``max_cols``): the
    :func:`log_scaled` ERF with a colour bar, titled with the layer's name,
    module and 50% area ratio; ``title`` above all. Writes ``out_file``
    (PNG) and returns it."""
    plt = _pyplot()
    n = len(layers)
    cols = min(n, max_cols)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, squeeze=False, layout='constrained',
                             figsize=(3.3 * cols, 3.2 * rows + 0.5))
    for ax in axes.flat[n:]:
        ax.axis('off')
    for ax, layer in zip(axes.flat, layers):
        im = ax.imshow(log_scaled(maps[layer.name]), cmap='RdYlGn',
                       vmin=0, vmax=1)
        area = erf_score(maps[layer.name], [0.5])[0]
        ax.set_title(f'{layer.name}\n{layer.path}\n50% area {area:.4f}',
                     fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
    fig.suptitle(title, fontsize=8)
    return _save(fig, out_file, dpi)


def plot_cam(images: Sequence[np.ndarray],
             cams: Sequence[Dict[str, np.ndarray]],
             layers: Sequence[Layer], row_titles: Sequence[str], title: str,
             out_file: str, alpha: float = 0.5, dpi: int = 100) -> str:
    """One row per image: the image, then its Grad-CAM overlay for each
    layer (the paper's Fig. 7 / 8b). Writes ``out_file`` and returns it."""
    plt = _pyplot()
    rows, cols = len(images), len(layers) + 1
    fig, axes = plt.subplots(rows, cols, squeeze=False, layout='constrained',
                             figsize=(2.4 * cols, 2.5 * rows + 0.4))
    for r, (image, maps, row_title) in enumerate(zip(images, cams,
                                                     row_titles)):
        axes[r][0].imshow(image)
        axes[r][0].set_title(row_title, fontsize=7)
        for c, layer in enumerate(layers, 1):
            axes[r][c].imshow(overlay(image, maps[layer.name], alpha))
            axes[r][c].set_title(layer.name, fontsize=8)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(title, fontsize=8)
    return _save(fig, out_file, dpi)


def _save(fig, out_file: str, dpi: int) -> str:
    import matplotlib.pyplot as plt

    folder = osp.dirname(osp.abspath(out_file))
    os.makedirs(folder, exist_ok=True)
    fig.savefig(out_file, dpi=dpi)
    plt.close(fig)
    return out_file
