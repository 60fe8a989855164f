"""``compile_cfg`` of the backbone: its stages through ``torch.compile``, for
training and inference alike (MMEngine's ``compile=`` wraps ``train_step``
only)."""
from typing import Optional, Tuple

import torch
from torch import Tensor

from ...ops.rules import eager


class CompiledStages:
    """Mixin for a module with ``forward_stages(x)`` and ``compile_cfg`` (the
    keyword arguments of ``torch.compile``, or None): :meth:`run_stages`
    compiles ``forward_stages`` on first use. Tracing (FLOPs counting, ONNX
    export) runs it eagerly; a copy compiles its own."""

    compile_cfg: Optional[dict] = None
    _compiled = None  # the compiled forward_stages, made on first use

    def run_stages(self, x: Tensor) -> Tuple[Tensor, ...]:
        if self.compile_cfg is None or not eager():
            return self.forward_stages(x)
        if self._compiled is None:
            self._compiled = torch.compile(self.forward_stages,
                                           **self.compile_cfg)
        return self._compiled(x)

    def __getstate__(self) -> dict:
        # deepcopy and pickle: the compiled function runs this module's
        # weights, so the copy goes without it.
        state = self.__dict__.copy()
        state.pop('_compiled', None)
        return state
