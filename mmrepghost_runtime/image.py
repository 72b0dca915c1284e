"""Image decoding exactly as mmcv's ``LoadImageFromFile`` (so accuracy equals ``mim test``'s).

mmcv decodes with ``cv2.imdecode(bytes, cv2.IMREAD_COLOR)`` (``imfrombytes(flag='color')``):
8-bit BGR, grayscale replicated to three channels, alpha dropped (not composited), 16-bit
samples reduced to 8 bits, EXIF orientation applied. :func:`read_image` returns that array
and notes saying which of these conversions happened.
"""
from typing import List, Tuple

import cv2
import numpy as np

__all__ = ['ImageError', 'read_image', 'decode_image']


class ImageError(ValueError):
    """A file that cannot be read or decoded as an image (the message names the file)."""


def read_image(path: str, with_notes: bool = True) -> Tuple[np.ndarray, List[str]]:
    """``(bgr uint8 (H, W, 3), notes)`` of the image file ``path``; :class:`ImageError`.

    The notes need a second decode of the file as stored (``IMREAD_UNCHANGED``);
    ``with_notes=False`` skips it and returns no notes.
    """
    path = str(path)
    try:
        with open(path, 'rb') as f:
            content = f.read()
    except OSError as e:
        raise ImageError(f'{path}: cannot read the file ({e.strerror or e})') from None
    return decode_image(content, name=path, with_notes=with_notes)


def decode_image(content: bytes, name: str = '<bytes>',
                 with_notes: bool = True) -> Tuple[np.ndarray, List[str]]:
    """:func:`read_image` of encoded bytes; ``name`` is used in errors."""
    buffer = np.frombuffer(content, np.uint8)
    image = None
    if buffer.size:
        try:
            image = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
        except cv2.error:
            image = None
    if image is None or image.size == 0:
        kind = 'an empty file' if not buffer.size else 'not an image OpenCV can decode'
        raise ImageError(f'{name}: {kind} (expected a JPEG, PNG, BMP, TIFF, WebP, ... file)')
    return image, _notes(buffer, image) if with_notes else []


def _notes(buffer: np.ndarray, image: np.ndarray) -> List[str]:
    """What ``IMREAD_COLOR`` changed, from the file's own depth and channels."""
    try:
        raw = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    except cv2.error:
        raw = None
    if raw is None:
        return []
    notes = []
    channels = 1 if raw.ndim == 2 else raw.shape[2]
    if channels == 1:
        notes.append('grayscale image: the gray channel is replicated to B, G and R')
    elif channels == 2:
        notes.append('grayscale image with alpha: alpha dropped, gray replicated to B, G, R')
    elif channels == 4:
        notes.append('image with an alpha channel (RGBA or gray + alpha): alpha dropped, not '
                     'composited')
    if raw.dtype != np.uint8:
        bits = raw.dtype.itemsize * 8
        how = 'value >> 8' if raw.dtype == np.uint16 else 'OpenCV conversion'
        notes.append(f'{bits}-bit {raw.dtype.name} samples converted to 8 bits ({how}, as '
                     'cv2.IMREAD_COLOR and mmcv do)')
    if raw.shape[:2] != image.shape[:2]:
        notes.append('EXIF orientation applied (image rotated as mmcv does)')
    return notes
