"""What our configs name in the toolboxes' data pipelines: the ``AlignResize``
transform and the ``FullBatchSampler`` batch sampler."""
from .samplers import FullBatchSampler
from .transforms import AlignResize

__all__ = ['AlignResize', 'FullBatchSampler']
