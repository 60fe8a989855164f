"""``compile_cfg``: the backbone's stages through ``torch.compile`` in training
and inference (MMEngine's ``compile=`` wraps ``train_step`` only)."""
from typing import Optional, Tuple

import torch
from torch import Tensor

from ...ops.rules import eager


class CompiledStages:
    """Mixin: :meth:`run_stages` compiles ``forward_stages`` with
    ``compile_cfg`` (``torch.compile`` kwargs, or None) on first use; tracing
    (FLOPs, ONNX export) runs it eagerly, a copy compiles its own."""

    compile_cfg: Optional[dict] = None
    _compiled = None

    def run_stages(self, x: Tensor) -> Tuple[Tensor, ...]:
        if self.compile_cfg is None or not eager():
            return self.forward_stages(x)
        if self._compiled is None:
            self._compiled = torch.compile(self.forward_stages,
                                           **self.compile_cfg)
        return self._compiled(x)

    def __getstate__(self) -> dict:
        # deepcopy/pickle: the compiled function is bound to this module
        state = self.__dict__.copy()
        state.pop('_compiled', None)
        return state
