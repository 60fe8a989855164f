"""Which layers to look at: the paper's names resolved to module paths of a
built model, and forward hooks that capture their outputs (with hooks set,
:mod:`transxnet_mm.ops` runs plain PyTorch ops, not its in-place shortcuts).
"""
import difflib
from contextlib import contextmanager
from typing import (Callable, Dict, Iterator, List, NamedTuple, Optional,
                    Sequence, Tuple)

from torch import Tensor, nn

from ..models.utils.ckpt_convert import arch_name

# The paper's names -> module paths in the backbone; {last} and {block} are
# the last stage and its last block, read from the built model.
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
    """A layer to look at: the user's name, its module path, the module."""
    name: str
    path: str
    module: nn.Module


def describe_model(model: nn.Module) -> str:
    """'TransXNet-T' (or the backbone's class name) for figure titles."""
    backbone, _ = find_backbone(model)
    name = type(backbone).__name__
    arch = arch_name(backbone) if hasattr(backbone, 'arch') else 'custom'
    return name if arch == 'custom' else f'{name}-{arch}'


def find_backbone(model: nn.Module) -> Tuple[nn.Module, str]:
    """The TransXNet backbone of ``model`` (or ``model`` itself) and its
    module-path prefix (``'backbone.'`` or ``''``)."""
    backbone = getattr(model, 'backbone', None)
    if isinstance(backbone, nn.Module):
        return backbone, 'backbone.'
    return model, ''


def short_layer_paths(model: nn.Module) -> Dict[str, str]:
    """:data:`SHORT_NAMES` resolved to module paths of ``model``."""
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
    """The short names with their meaning (and paths, given the model)."""
    paths = short_layer_paths(model) if model is not None else {}
    lines = []
    for name, (_, meaning) in SHORT_NAMES.items():
        where = f' = {paths[name]}' if name in paths else ''
        lines.append(f'  {name:<14} {meaning}{where}')
    return '\n'.join(lines)


def resolve_layers(model: nn.Module, names: Sequence[str]) -> List[Layer]:
    """The modules behind ``names`` (deduplicated): short names or module
    names of ``model``, ``backbone.`` optional; else ValueError."""
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
    """Why ``name`` is not a layer, with the accepted and close names."""
    modules = [n for n, _ in model.named_modules() if n]
    paths = short_layer_paths(model)
    short = list(paths) or list(SHORT_NAMES)
    _, prefix = find_backbone(model)
    pool = short + modules + [m[len(prefix):] for m in modules
                              if prefix and m.startswith(prefix)]
    close = difflib.get_close_matches(name, pool, n=5, cutoff=0.6)
    hint = (f'\nClose module names: {", ".join(close)}' if close else '')
    example = paths.get('dmixer.fused', 'backbone.stages.3')
    return (f'Unknown layer {name!r}. Accepted short names:\n'
            f'{accepted_names_help(model)}\n'
            f'or any module name of the model, with or without '
            f"'backbone.' (e.g. {example}; see model.named_modules())."
            f'{hint}')


def check_inside(layers: Sequence[Layer], model: nn.Module) -> None:
    """Every layer is in the backbone (which the ERF runs), else ValueError."""
    backbone, prefix = find_backbone(model)
    inside = {id(m) for m in backbone.modules()}
    for layer in layers:
        if id(layer.module) not in inside:
            raise ValueError(
                f'Layer {layer.name!r} ({layer.path}) is outside the backbone'
                f'; the ERF runs the backbone only, so name a layer under '
                f'{prefix or "the model"!r}.')


class _Captured(Exception):
    """Raised by the last hook: the rest of the forward is not needed."""


def _feature_map(layer: Layer, output) -> Tensor:
    """A hooked output as one (B, C, H, W) tensor (a tuple's first)."""
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
    """Hooks keeping each layer's first output in the yielded dict; ``stop``
    ends the forward (raises :class:`_Captured`) once all are kept."""
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
    """No parameter requires grad inside (only input gradients are used)."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
