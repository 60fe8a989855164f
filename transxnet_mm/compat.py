"""Workarounds for upstream incompatibilities of the pinned stack.

Each one says which upstream behaviour it covers. Nothing here runs on
``import transxnet_mm``: our tools opt in where they need it.
"""
import os.path as osp
import pickle
from contextlib import contextmanager
from typing import Iterator

import torch
from mmengine.logging import print_log
from mmengine.runner.checkpoint import CheckpointLoader


@contextmanager
def trusted_local_checkpoints() -> Iterator[None]:
    """Let MMEngine read its own training checkpoints under torch >= 2.6.

    Upstream: torch 2.6 made ``torch.load(weights_only=True)`` the default,
    and mmengine 0.10.7's ``load_from_local`` relies on the default. Its
    checkpoints hold ``message_hub`` HistoryBuffers whose pickled state calls
    ``builtins.getattr``, which no allow-list can admit safely, so ``--resume``,
    ``tools/test.py`` and ``init_detector`` fail with UnpicklingError.

    Inside this context MMEngine's local-file loader first tries the safe load
    and, only if that fails, loads with ``weights_only=False`` and says so:
    meant for the checkpoints a user's own runs wrote and hands to our tools.
    The original loader is restored on exit; ``torch.load`` itself is never
    changed.
    """
    original = CheckpointLoader._get_checkpoint_loader('')

    def load_from_local_trusted(filename: str, map_location=None):
        filename = osp.expanduser(filename)
        if not osp.isfile(filename):
            raise FileNotFoundError(f'{filename} can not be found.')
        try:
            return torch.load(filename, map_location=map_location,
                              weights_only=True)
        except pickle.UnpicklingError:
            print_log(
                f'{filename} holds MMEngine training state (HistoryBuffer) '
                f"that torch's weights_only loader rejects; loading it with "
                f'weights_only=False. Load only checkpoints you trust.',
                logger='current')
            return torch.load(filename, map_location=map_location,
                              weights_only=False)

    CheckpointLoader.register_scheme('', load_from_local_trusted, force=True)
    try:
        yield
    finally:
        CheckpointLoader.register_scheme('', original, force=True)
