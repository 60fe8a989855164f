"""The transform and batch sampler our configs name in data pipelines."""
from .samplers import FullBatchSampler
from .transforms import AlignResize

__all__ = ['AlignResize', 'FullBatchSampler']
