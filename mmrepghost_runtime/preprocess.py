"""The test pipeline and data preprocessor in numpy + OpenCV + Pillow.

Reproduces, for BGR uint8 images as :func:`~mmrepghost_runtime.image.read_image` gives them:

* mmdet ``Resize(scale, keep_ratio=True)`` (``mmcv.imrescale``: factor
  ``min(max(scale) / max(h, w), min(scale) / min(h, w))``, new size ``int(w * f + 0.5)``,
  scale factor ``new_w / w, new_h / h``) and ``Resize(keep_ratio=False)`` (``mmcv.imresize``);
* mmpretrain ``ResizeEdge`` and mmcv ``CenterCrop`` (without ``auto_pad``);
* mmengine ``ImgDataPreprocessor`` / mmdet ``DetDataPreprocessor`` / mmpretrain
  ``ClsDataPreprocessor``: BGR -> RGB, float32, ``(x - mean) / std``, then the batch padded at
  the bottom/right with ``pad_value`` (NaN with ``nan_padding``: the detector graph reads
  each image's extent from it) to its largest height and width rounded up to ``pad_divisor``.
"""
import math
from dataclasses import dataclass
from typing import List, Mapping, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
from PIL import Image

from .sidecar import INTERPOLATIONS, PreprocessSpec, ResizeSpec

__all__ = ['ImageMeta', 'preprocess', 'preprocess_image', 'resize_image', 'center_crop',
           'resized_size']

_CV2_INTERP = {
    'nearest': cv2.INTER_NEAREST,
    'bilinear': cv2.INTER_LINEAR,
    'bicubic': cv2.INTER_CUBIC,
    'area': cv2.INTER_AREA,
    'lanczos': cv2.INTER_LANCZOS4,
}
_PIL_INTERP = {
    'nearest': Image.Resampling.NEAREST,
    'bilinear': Image.Resampling.BILINEAR,
    'bicubic': Image.Resampling.BICUBIC,
    'box': Image.Resampling.BOX,
    'lanczos': Image.Resampling.LANCZOS,
    'hamming': Image.Resampling.HAMMING,
}
assert set(_CV2_INTERP) == set(INTERPOLATIONS['cv2'])
assert set(_PIL_INTERP) == set(INTERPOLATIONS['pillow'])


@dataclass(frozen=True)
class ImageMeta:
    """Where one image went (mmdet's ``img_metas``).

    ``ori_shape``/``img_shape``/``pad_shape`` are (h, w): the decoded image, after resize (and
    crop), and of the padded batch; ``scale_factor`` is (w_scale, h_scale) of the resize;
    ``crop_offset`` (x, y) is where a center crop started in the resized image ((0, 0) without).
    """
    ori_shape: Tuple[int, int]
    img_shape: Tuple[int, int]
    scale_factor: Tuple[float, float]
    pad_shape: Tuple[int, int]
    crop_offset: Tuple[int, int] = (0, 0)


def resized_size(height: int, width: int, spec: ResizeSpec) -> Tuple[int, int]:
    """The (new_w, new_h) the resize step gives an image of ``height`` x ``width``."""
    if spec.type == 'keep_ratio':  # mmcv.rescale_size + _scale_size
        factor = min(max(spec.scale) / max(height, width), min(spec.scale) / min(height, width))
        return int(width * float(factor) + 0.5), int(height * float(factor) + 0.5)
    if spec.type == 'fixed':
        return tuple(spec.size)
    edge = spec.edge  # mmpretrain ResizeEdge.transform
    if (edge == 'short' and width < height) or (edge == 'long' and width > height) or (
            edge == 'width'):
        return spec.scale, int(spec.scale * height / width)
    return int(spec.scale * width / height), spec.scale


def resize_image(image: np.ndarray, spec: Optional[ResizeSpec]
                 ) -> Tuple[np.ndarray, Tuple[float, float]]:
    """``(resized image, (w_scale, h_scale))`` as mmdet ``Resize`` / mmpretrain ``ResizeEdge``
    (``spec`` None: the image itself, scale 1)."""
    if spec is None:
        return image, (1.0, 1.0)
    height, width = image.shape[:2]
    new_w, new_h = resized_size(height, width, spec)
    if new_w < 1 or new_h < 1:
        raise ValueError(f'an image of {width}x{height} pixels resizes to {new_w}x{new_h} '
                         f'({spec.type} resize); it is too thin to process')
    if spec.backend == 'pillow':  # mmcv.imresize(backend='pillow')
        resized = np.array(Image.fromarray(image).resize((new_w, new_h),
                                                         _PIL_INTERP[spec.interpolation]))
    else:
        resized = cv2.resize(image, (new_w, new_h),
                             interpolation=_CV2_INTERP[spec.interpolation])
    return resized, (new_w / width, new_h / height)


def center_crop(image: np.ndarray, size: Tuple[int, int]) -> Tuple[np.ndarray, Tuple[int, int]]:
    """mmcv ``CenterCrop(crop_size=(w, h))`` without padding: ``(crop, (x1, y1))``."""
    crop_w, crop_h = size
    height, width = image.shape[:2]
    crop_h, crop_w = min(crop_h, height), min(crop_w, width)
    y1 = max(0, int(round((height - crop_h) / 2.)))
    x1 = max(0, int(round((width - crop_w) / 2.)))
    y2 = min(height, y1 + crop_h) - 1
    x2 = min(width, x1 + crop_w) - 1
    return image[y1:y2 + 1, x1:x2 + 1], (x1, y1)


def _spec(spec: Union[PreprocessSpec, Mapping]) -> PreprocessSpec:
    return spec if isinstance(spec, PreprocessSpec) else PreprocessSpec.from_dict(spec)


def _check_image(image: np.ndarray, index: int) -> None:
    if (not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3
            or image.shape[2] != 3 or 0 in image.shape):
        what = (f'{image.dtype} array of shape {image.shape}' if isinstance(image, np.ndarray)
                else type(image).__name__)
        raise ValueError(f'image {index}: expected a BGR uint8 array (H, W, 3) as read_image '
                         f'returns, got {what}')


def preprocess_image(image: np.ndarray, spec: Union[PreprocessSpec, Mapping]
                     ) -> Tuple[np.ndarray, Tuple[int, int], Tuple[float, float],
                                Tuple[int, int]]:
    """One image: ``(normalized float32 (3, h, w), ori_shape, scale_factor, crop_offset)``."""
    spec = _spec(spec)
    _check_image(image, 0)
    ori_shape = image.shape[:2]
    resized, scale_factor = resize_image(image, spec.resize)
    offset = (0, 0)
    if spec.center_crop is not None:
        resized, offset = center_crop(resized, spec.center_crop)
    if spec.color_order == 'rgb':
        resized = resized[..., ::-1]
    chw = np.ascontiguousarray(resized.transpose(2, 0, 1)).astype(np.float32)
    mean = np.asarray(spec.mean, np.float32).reshape(3, 1, 1)
    std = np.asarray(spec.std, np.float32).reshape(3, 1, 1)
    return (chw - mean) / std, ori_shape, scale_factor, offset


def preprocess(images: Sequence[np.ndarray], spec: Union[PreprocessSpec, Mapping],
               pad_shape: Optional[Tuple[int, int]] = None
               ) -> Tuple[np.ndarray, List[ImageMeta]]:
    """A batch: ``(float32 (N, 3, H, W), [ImageMeta] * N)``.

    ``H``/``W`` are the largest resized height/width rounded up to ``spec.pad_divisor``
    (``pad_shape`` forces a larger (H, W), which must be a multiple of the divisor too).
    """
    spec = _spec(spec)
    if isinstance(images, np.ndarray) and images.ndim == 3:
        raise ValueError('preprocess takes a list of images; wrap a single image in a list')
    if len(images) == 0:
        raise ValueError('preprocess needs at least one image')
    for i, image in enumerate(images):
        _check_image(image, i)
    done = [preprocess_image(image, spec) for image in images]
    divisor = spec.pad_divisor
    height = math.ceil(max(x.shape[1] for x, *_ in done) / divisor) * divisor
    width = math.ceil(max(x.shape[2] for x, *_ in done) / divisor) * divisor
    if pad_shape is not None:
        if pad_shape[0] < height or pad_shape[1] < width or pad_shape[0] % divisor or \
                pad_shape[1] % divisor:
            raise ValueError(f'pad_shape {tuple(pad_shape)} is smaller than the batch '
                             f'({height}, {width}) or not a multiple of {divisor}')
        height, width = pad_shape
    batch = np.full((len(done), 3, height, width),
                    np.nan if spec.nan_padding else spec.pad_value, np.float32)
    metas = []
    for i, (chw, ori_shape, scale_factor, offset) in enumerate(done):
        batch[i, :, :chw.shape[1], :chw.shape[2]] = chw
        metas.append(ImageMeta(ori_shape=tuple(ori_shape), img_shape=chw.shape[1:],
                               scale_factor=scale_factor, pad_shape=(height, width),
                               crop_offset=offset))
    return batch, metas
