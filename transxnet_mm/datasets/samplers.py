"""A batch sampler whose every training batch is full.

TransXNet cannot train on a batch of one image per BatchNorm: IDConv's
BatchNorm normalises pooled descriptors of one value per channel and sample,
and PyTorch refuses that (the backbone raises a clear error). mmdet 3's
``AspectRatioBatchSampler`` (and any ``BatchSampler`` with
``drop_last=False``) yields a short last batch at the end of an epoch; with
an odd-sized dataset in one process (SyncBN falls back to BN) that batch can
hold one image and training dies after its first epoch. mmdet 2's
``GroupSampler``, which the authors trained with, padded its groups by
repeating samples, so their runs never saw a short batch.

``FullBatchSampler`` wraps any batch sampler (by default mmdet's grouping
one, when given as a config) and pads every batch shorter than
``batch_size`` with samples drawn earlier in the same epoch, as
``GroupSampler`` did. The number of batches per epoch is the wrapped
sampler's, so schedules and logs are unchanged. Importing ``transxnet_mm``
registers it in MMEngine's root ``DATA_SAMPLERS``, which mmdet, mmseg and
mmpretrain fall back to::

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

    Args:
        sampler (Sampler): the per-process index sampler (e.g.
            ``DefaultSampler``); the runner passes it.
        batch_size (int): images per batch; the runner passes it.
        batch_sampler (dict, optional): config of the wrapped batch sampler,
            built with the same ``sampler`` and ``batch_size`` (e.g.
            ``dict(type='AspectRatioBatchSampler')``). ``None``: PyTorch's
            ``BatchSampler`` with ``drop_last=False``.

    A short batch is completed with the first indices of this epoch that it
    does not hold (random ones, as the sampler shuffles), cycling through
    them when the epoch is smaller than ``batch_size``.
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
