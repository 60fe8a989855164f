"""Data transforms the paper's pipelines need and the toolboxes lack.

Registered in MMEngine's root ``TRANSFORMS``, which mmseg, mmdet and
mmpretrain fall back to; only mmcv is imported here.
"""
import math
from typing import Optional, Tuple, Union

import mmcv
from mmcv.transforms import Resize
from mmengine.registry import TRANSFORMS


@TRANSFORMS.register_module()
class AlignResize(Resize):
    """Resize like mmcv's ``Resize``, then stretch to multiples of a divisor.

    The authors' ADE20K test resize (their ``AlignResize``, from the
    PoolFormer / UniFormer code): both sides are rounded up to multiples of
    ``size_divisor`` by resizing, not padding, with their interpolations, so
    the test inputs (and mIoU) are theirs. Keys as for ``Resize``; the
    ``scale_factor`` key is (w, h) of the final size over the input size.

    Args:
        scale, scale_factor, keep_ratio, backend: as for ``Resize`` (first
            resize).
        size_divisor (int): Both final sides are multiples of it (32: the
            last stage's stride).
        interpolation (str): Of the image; seg maps always use 'nearest'.
    """

    def __init__(self,
                 scale: Optional[Union[int, Tuple[int, int]]] = None,
                 scale_factor: Optional[Union[float, Tuple[float,
                                                           float]]] = None,
                 keep_ratio: bool = True,
                 size_divisor: int = 32,
                 backend: str = 'cv2',
                 interpolation: str = 'bilinear') -> None:
        if scale is None and scale_factor is None:
            raise ValueError('AlignResize needs `scale` or `scale_factor`')
        if not isinstance(size_divisor, int) or size_divisor < 1:
            raise ValueError(f'size_divisor must be a positive int, got '
                             f'{size_divisor!r}')
        super().__init__(scale=scale, scale_factor=scale_factor,
                         keep_ratio=keep_ratio, backend=backend,
                         interpolation=interpolation)
        self.size_divisor = size_divisor

    def aligned_size(self, h: int, w: int) -> Tuple[int, int]:
        """(h, w) rounded up to multiples of ``size_divisor``."""
        d = self.size_divisor
        return math.ceil(h / d) * d, math.ceil(w / d) * d

    def _resize_img(self, results: dict) -> None:
        """``Resize``, then to the aligned size; the scale factor covers
        both, so boxes and points follow."""
        img = results.get('img', None)
        if img is None:
            return
        if img.ndim not in (2, 3) or min(img.shape[:2]) < 1:
            raise ValueError(f'AlignResize needs an HxW or HxWxC image, got '
                             f'shape {img.shape}')
        h, w = img.shape[:2]
        super()._resize_img(results)
        new_h, new_w = self.aligned_size(*results['img'].shape[:2])
        img = mmcv.imresize(results['img'], (new_w, new_h),
                            interpolation=self.interpolation,
                            backend=self.backend)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['scale_factor'] = (new_w / w, new_h / h)

    def _resize_seg(self, results: dict) -> None:
        """``Resize``, then (nearest) to the image's final size, or to its
        own aligned size without an image."""
        if results.get('gt_seg_map', None) is None:
            return
        super()._resize_seg(results)
        seg = results['gt_seg_map']
        if results.get('img', None) is not None:
            new_h, new_w = results['img'].shape[:2]
        else:
            new_h, new_w = self.aligned_size(*seg.shape[:2])
        results['gt_seg_map'] = mmcv.imresize(
            seg, (new_w, new_h), interpolation='nearest', backend=self.backend)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(scale={self.scale}, '
                f'scale_factor={self.scale_factor}, '
                f'keep_ratio={self.keep_ratio}, '
                f'size_divisor={self.size_divisor}, backend={self.backend}, '
                f'interpolation={self.interpolation})')
