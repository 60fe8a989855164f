"""Data transforms the paper's pipelines need and the toolboxes lack.

``AlignResize`` is registered in MMEngine's root ``TRANSFORMS`` registry, which
the mmseg (and mmdet, mmpretrain) registries fall back to, so a pipeline finds
it by ``type='AlignResize'``. Only mmcv is imported here, never mmseg.
"""
import math
from typing import Optional, Tuple, Union

import mmcv
from mmcv.transforms import Resize
from mmengine.registry import TRANSFORMS


@TRANSFORMS.register_module()
class AlignResize(Resize):
    """Resize like mmcv's ``Resize``, then stretch to multiples of a divisor.

    The authors' ADE20K test pipeline (their ``AlignResize``, taken from the
    PoolFormer / UniFormer segmentation code) rescales each image to the
    single scale (2048, 512) keeping the ratio, then resizes it once more so
    that BOTH sides are the next multiples of ``size_divisor`` (32: the stride
    of the last stage). Resizing rather than padding means no border is added
    to the image; rounding each side up changes it by fewer than
    ``size_divisor`` pixels, so the ratio is kept to within one divisor step.
    The two interpolations are those of the authors, so the test inputs (and
    mIoU) are theirs.

    Required Keys:

    - img
    - gt_seg_map (optional)
    - gt_bboxes (optional)
    - gt_keypoints (optional)

    Modified Keys:

    - img
    - gt_seg_map
    - gt_bboxes
    - gt_keypoints
    - img_shape

    Added Keys:

    - scale
    - scale_factor: (w, h) of the final size over the input size
    - keep_ratio

    Args:
        scale (int | tuple[int, int], optional): Target scale (w, h) of the
            first resize, as for ``Resize``.
        scale_factor (float | tuple[float, float], optional): Used instead of
            ``scale`` when that is None, as for ``Resize``.
        keep_ratio (bool): Keep the ratio in the first resize (the image fits
            in ``scale``). Defaults to True.
        size_divisor (int): Both final sides are multiples of it.
            Defaults to 32.
        backend (str): 'cv2' or 'pillow'. Defaults to 'cv2'.
        interpolation (str): Interpolation of the image; seg maps always use
            'nearest'. Defaults to 'bilinear'.
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
        super().__init__(
            scale=scale,
            scale_factor=scale_factor,
            keep_ratio=keep_ratio,
            backend=backend,
            interpolation=interpolation)
        self.size_divisor = size_divisor

    def aligned_size(self, h: int, w: int) -> Tuple[int, int]:
        """(h, w) rounded up to multiples of ``size_divisor``."""
        d = self.size_divisor
        return math.ceil(h / d) * d, math.ceil(w / d) * d

    def _resize_img(self, results: dict) -> None:
        """Resize as ``Resize`` does, then to the aligned size; the scale
        factor is that of the whole change, so boxes and points follow."""
        img = results.get('img', None)
        if img is None:
            return
        if img.ndim not in (2, 3) or min(img.shape[:2]) < 1:
            raise ValueError(f'AlignResize needs an HxW or HxWxC image, got '
                             f'shape {img.shape}')
        h, w = img.shape[:2]
        super()._resize_img(results)
        new_h, new_w = self.aligned_size(*results['img'].shape[:2])
        img = mmcv.imresize(
            results['img'], (new_w, new_h),
            interpolation=self.interpolation,
            backend=self.backend)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['scale_factor'] = (new_w / w, new_h / h)

    def _resize_seg(self, results: dict) -> None:
        """Resize the seg map as ``Resize`` does, then (nearest) to the
        image's final size, or to its own aligned size without an image."""
        if results.get('gt_seg_map', None) is None:
            return
        super()._resize_seg(results)
        seg = results['gt_seg_map']
        if results.get('img', None) is not None:
            new_h, new_w = results['img'].shape[:2]
        else:
            new_h, new_w = self.aligned_size(*seg.shape[:2])
        results['gt_seg_map'] = mmcv.imresize(
            seg, (new_w, new_h), interpolation='nearest',
            backend=self.backend)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(scale={self.scale}, '
                f'scale_factor={self.scale_factor}, '
                f'keep_ratio={self.keep_ratio}, '
                f'size_divisor={self.size_divisor}, '
                f'backend={self.backend}, '
                f'interpolation={self.interpolation})')
