"""Where drawn images go, checked before anything is written, and how they are written."""
import os
import os.path as osp
from typing import List, Sequence

import cv2
import numpy as np

from .files import atomic_write_bytes

__all__ = ['OutputError', 'plan_outputs', 'write_image']


class OutputError(ValueError):
    """Outputs that would replace an input, collide with each other or exist (no --force)."""


def _output_name(image_path: str, suffix: str = '') -> str:
    stem, ext = osp.splitext(osp.basename(image_path))
    return stem + suffix + ('.png' if ext.lower() == '.png' else '.jpg')


def _same_file(a: str, b: str) -> bool:
    try:
        return osp.samefile(a, b)
    except OSError:
        return osp.realpath(a) == osp.realpath(b)


def plan_outputs(image_paths: Sequence[str], out_dir: str, overwrite: bool = False) -> List[str]:
    """One output path per input: ``out_dir/<stem>.png`` for PNG inputs, ``.jpg`` otherwise.

    An output never replaces an input image: where ``<stem>.<ext>`` is one of the inputs (an
    ``out_dir`` that holds the inputs), it becomes ``<stem>_pred.<ext>``. Raises
    :class:`OutputError` when ``out_dir`` is not a folder, when two inputs map to one output,
    or when an output exists and ``overwrite`` is false.
    """
    out_dir = str(out_dir)
    if osp.exists(out_dir) and not osp.isdir(out_dir):
        raise OutputError(f'--out-dir {out_dir} exists and is not a folder')
    inputs = [str(p) for p in image_paths]
    existing_inputs = [p for p in inputs if osp.exists(p)]

    def is_input(path: str) -> bool:
        return osp.exists(path) and any(_same_file(path, p) for p in existing_inputs)

    planned: List[str] = []
    owner = {}
    for image_path in inputs:
        path = osp.join(out_dir, _output_name(image_path))
        if is_input(path):
            path = osp.join(out_dir, _output_name(image_path, '_pred'))
            if is_input(path):
                raise OutputError(f'{path} would replace an input image; choose another '
                                  '--out-dir')
        key = osp.normcase(osp.abspath(path))
        if key in owner:
            raise OutputError(f'{owner[key]} and {image_path} would both be drawn to {path}; '
                              'rename one or run them separately')
        owner[key] = image_path
        if osp.exists(path) and not overwrite:
            raise OutputError(f'{path} exists; pass --force to replace it')
        planned.append(path)
    return planned


def write_image(path: str, image: np.ndarray, overwrite: bool = False) -> None:
    """Encode ``image`` (BGR) by the suffix of ``path`` and write it atomically."""
    ext = osp.splitext(path)[1].lower()
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if ext in ('.jpg', '.jpeg') else []
    try:
        ok, encoded = cv2.imencode(ext, image, params)
    except cv2.error:
        ok = False
    if not ok:
        raise OutputError(f'{path}: OpenCV cannot encode a {ext!r} image')
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    atomic_write_bytes(path, encoded.tobytes(), overwrite=overwrite)
