"""A batch sampler whose every training batch is full.

IDConv's BatchNorm (one pooled value per channel and sample) cannot train on
one image, but a ``BatchSampler`` with ``drop_last=False`` (e.g. mmdet 3's
``AspectRatioBatchSampler``) can end an epoch with one. mmdet 2's
``GroupSampler``, which the authors trained with, padded its groups; so does
:class:`FullBatchSampler`, registered in MMEngine's root ``DATA_SAMPLERS``::

    train_dataloader = dict(batch_sampler=dict(
        type='FullBatchSampler',
        batch_sampler=dict(type='AspectRatioBatchSampler')))
"""
from typing import Iterator, List, Optional

from mmengine.registry import DATA_SAMPLERS
from torch.utils.data import BatchSampler, Sampler


@DATA_SAMPLERS.register_module()
class FullBatchSampler(BatchSampler):
    """Pad the short batches of a batch sampler to ``batch_size``.

    A short batch is completed with this epoch's first indices it does not
    hold, cycling when the epoch is smaller than ``batch_size``. The number
    of batches stays the wrapped sampler's.

    Args:
        sampler (Sampler): the per-process index sampler (runner-given).
        batch_size (int): images per batch (runner-given).
        batch_sampler (dict, optional): config of the wrapped batch sampler,
            built with the same ``sampler`` and ``batch_size``. ``None``:
            PyTorch's ``BatchSampler`` with ``drop_last=False``.
    """

    def __init__(self,
                 sampler: Sampler,
                 batch_size: int,
                 batch_sampler: Optional[dict] = None) -> None:
        if not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f'FullBatchSampler: batch_size must be a '
                             f'positive int, got {batch_size!r}.')
        self.sampler = sampler  # the train loop calls sampler.set_epoch
        self.batch_size = batch_size
        self.drop_last = False
        if batch_sampler is None:
            self.batch_sampler = BatchSampler(sampler, batch_size, False)
        elif isinstance(batch_sampler, dict):
            if batch_sampler.get('drop_last'):
                raise ValueError(
                    'FullBatchSampler pads short batches; a wrapped '
                    'batch_sampler with drop_last=True never yields one. '
                    'Use either, not both.')
            self.batch_sampler = DATA_SAMPLERS.build(
                batch_sampler,
                default_args=dict(sampler=sampler, batch_size=batch_size))
        else:
            raise TypeError(f'FullBatchSampler: batch_sampler must be a '
                            f'config dict or None, got {batch_sampler!r}.')

    def __iter__(self) -> Iterator[List[int]]:
        first: List[int] = []  # the first batch_size indices of the epoch
        for batch in self.batch_sampler:
            batch = list(batch)
            if len(first) < self.batch_size:
                first.extend(batch[:self.batch_size - len(first)])
            if len(batch) < self.batch_size:
                fill = [i for i in first if i not in batch] or batch
                while len(batch) < self.batch_size:
                    batch.extend(fill[:self.batch_size - len(batch)])
            yield batch

    def __len__(self) -> int:
        return len(self.batch_sampler)
