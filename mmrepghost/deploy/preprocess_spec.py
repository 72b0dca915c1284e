"""The config's test-time preprocessing as the deployment sidecar's ``preprocess`` entry.

mmdet and mmpretrain spread preprocessing over the test pipeline (load, resize, crop) and the
model's data preprocessor (channel order, mean/std, padding). :func:`preprocess_spec` reads
both once, at export, into the plain description that ``mmrepghost_runtime`` executes with
numpy, OpenCV and Pillow; a transform it cannot describe is refused by name rather than
silently skipped.
"""
from typing import Any, List, Mapping

from mmengine.config import Config

#: pipeline steps that do not change the pixels the network sees
IGNORED_TRANSFORMS = ('LoadAnnotations', 'PackDetInputs', 'PackInputs', 'PackClsInputs')
SUPPORTED_TRANSFORMS = ('LoadImageFromFile', 'Resize', 'ResizeEdge', 'CenterCrop')


def _transform_type(step: Mapping) -> str:
    kind = step['type']
    return kind if isinstance(kind, str) else kind.__name__


def _size_pair(value: Any, what: str) -> List[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        return [value, value]
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        return [int(v) for v in value]
    raise ValueError(f'{what}={value!r}: the runtime needs an int or (w, h) ints')


def _resize(step: Mapping) -> dict:
    kind = _transform_type(step)
    common = dict(backend=step.get('backend', 'cv2'),
                  interpolation=step.get('interpolation', 'bilinear'))
    if kind == 'ResizeEdge':
        return dict(type='resize_edge', edge=step.get('edge', 'short'), scale=int(step['scale']),
                    **common)
    if step.get('scale') is None or step.get('scale_factor') is not None:
        raise ValueError(f'{kind} with scale_factor={step.get("scale_factor")!r}: the runtime '
                         'supports Resize by scale only')
    scale = _size_pair(step['scale'], f'{kind}.scale')
    if step.get('keep_ratio', False):
        return dict(type='keep_ratio', scale=scale, **common)
    return dict(type='fixed', size=scale, **common)


def preprocess_spec(cfg: Config) -> dict:
    """The sidecar's ``preprocess`` dict for ``cfg``'s test pipeline and data preprocessor."""
    pipeline = cfg.test_dataloader.dataset.get('pipeline') or cfg.get('test_pipeline')
    if not pipeline:
        raise ValueError('the config has no test pipeline (test_dataloader.dataset.pipeline '
                         'or test_pipeline): nothing says how to preprocess images')
    resize, crop = None, None
    for step in pipeline:
        kind = _transform_type(step)
        if kind in IGNORED_TRANSFORMS:
            continue
        if kind not in SUPPORTED_TRANSFORMS:
            raise ValueError(f'test pipeline step {kind!r} cannot be exported to the runtime; '
                             f'supported: {list(SUPPORTED_TRANSFORMS)} (ignored: '
                             f'{list(IGNORED_TRANSFORMS)})')
        if kind == 'LoadImageFromFile' and step.get('color_type', 'color') != 'color':
            raise ValueError(f"LoadImageFromFile color_type={step['color_type']!r}: the "
                             "runtime reads images as mmcv's 'color' (3-channel BGR)")
        if kind in ('Resize', 'ResizeEdge'):
            if resize is not None or crop is not None:
                raise ValueError(f'test pipeline step {kind!r} after a resize or crop: the '
                                 'runtime supports one resize, then one center crop')
            resize = _resize(step)
        elif kind == 'CenterCrop':
            crop = _size_pair(step['crop_size'], 'CenterCrop.crop_size')
    preprocessor = cfg.model.get('data_preprocessor') or cfg.get('data_preprocessor') or {}
    if preprocessor.get('mean') is None or preprocessor.get('std') is None:
        raise ValueError('the data preprocessor has no mean/std; the runtime needs both')
    to_rgb = preprocessor.get('bgr_to_rgb', preprocessor.get('to_rgb', False))
    return dict(color_order='rgb' if to_rgb else 'bgr',
                resize=resize, center_crop=crop,
                mean=[float(v) for v in preprocessor['mean']],
                std=[float(v) for v in preprocessor['std']],
                pad_divisor=int(preprocessor.get('pad_size_divisor', 1)),
                pad_value=float(preprocessor.get('pad_value', 0)))
