"""Which path each module of a model takes, and why, during one forward.

    >>> print(transxnet_mm.ops.explain(model, x))
"""
from collections import Counter
from contextlib import contextmanager
from typing import Callable, Dict, Iterator, List, NamedTuple, Optional

import torch
from torch import Tensor, nn

from .rules import KERNELS, listening


class Decision(NamedTuple):
    module: str  # module path, stage and block indices dropped
    kernel: str
    taken: bool
    why: str


@contextmanager
def following(model: nn.Module) -> Iterator[List[str]]:
    """Yield a stack whose last entry is the running module's path ('' if none).

    ``forward`` is wrapped because hooks would make the kernels step aside."""
    stack: List[str] = ['']

    def tracked(name: str, forward: Callable) -> Callable:
        def call(*args, **kwargs):
            stack.append(name)
            try:
                return forward(*args, **kwargs)
            finally:
                stack.pop()
        return call

    wrapped = []
    for name, m in model.named_modules():
        if 'forward' not in vars(m):  # not wrapped already
            m.forward = tracked('.'.join(
                p for p in name.split('.') if not p.isdigit()), m.forward)
            wrapped.append(m)
    try:
        yield stack
    finally:
        for m in wrapped:
            del m.forward


def decisions(model: nn.Module, x: Tensor,
              device: Optional[str] = None) -> List[Decision]:
    """The decisions of one ``model(x)``, in call order. ``device``: decide
    as for that device type; the ops still run on ``x``'s device."""
    found: List[Decision] = []
    with following(model) as stack:

        def listener(kernel: str, taken: bool, why: str) -> None:
            found.append(Decision(stack[-1], kernel, taken, why))

        with listening(listener, device):
            model(x)
    return found


def explain(model: nn.Module, x: Tensor, device: Optional[str] = None,
            title: str = '') -> str:
    """A table of :func:`decisions` per module and kernel: calls, path, why."""
    counts: Dict[Decision, int] = Counter(decisions(model, x, device))
    mode = 'training' if model.training and torch.is_grad_enabled() else \
        'inference'
    head = (f'{title or type(model).__name__}: {mode}, input '
            f'{tuple(x.shape)} on {device or x.device.type}'
            f'{" (decided as for " + device + ")" if device else ""}')
    rows = [('module', 'kernel', 'calls', 'path', 'why')]
    for d, n in sorted(counts.items(),
                       key=lambda kv: (kv[0].module, kv[0].kernel)):
        rows.append((d.module or '(model)', d.kernel, str(n),
                     'kernel' if d.taken else 'plain', d.why))
    unused = sorted(set(KERNELS) - {d.kernel for d in counts})
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [head] + ['  '.join(c.ljust(w) for c, w in zip(r, widths)) +
                      '  ' + r[4] for r in rows]
    if unused:
        lines.append(f'not asked in this forward: {", ".join(unused)}')
    return '\n'.join(line.rstrip() for line in lines)
