"""The sidecar: the JSON file next to an end-to-end ONNX model (``model.onnx`` -> ``model.json``).

This module is the single definition of the format ``mmrepghost.deploy/1``: the exporter
(``tools/export_onnx.py --end2end``) builds a dict and writes
``Sidecar.from_dict(d)`` through :func:`write_sidecar`; the runtime reads it back with
:func:`load_sidecar`. Validation is strict: an unknown or missing key, or a value out of range,
raises one :class:`SidecarError` naming the key, the value and what is allowed.

::

    {"format": "mmrepghost.deploy/1",
     "task": "detection" | "instance_segmentation" | "classification",
     "export_id": "<uuid4 hex, also in the ONNX metadata_props>",
     "input": "input",
     "outputs": ["dets", "labels"] | ["dets", "labels", "masks"] | ["probs"] | ["logits"],
     "classes": ["disc", "triangle", "rectangle"],
     "preprocess": {"color_order": "rgb" | "bgr",
                    "resize": {"type": "keep_ratio", "scale": [1333, 800],
                               "backend": "cv2", "interpolation": "bilinear"}
                            | {"type": "fixed", "size": [W, H], "backend": ..., ...}
                            | {"type": "resize_edge", "edge": "short", "scale": 256, ...}
                            | null (no resize),
                    "center_crop": [W, H] | null,
                    "mean": [3 numbers], "std": [3 numbers],
                    "pad_divisor": 32, "pad_value": 0.0, "nan_padding": true},
     "postprocess": {"score_thr": 0.05, "iou_threshold": 0.5, "nms_pre": 1000,
                     "max_per_img": 100, "mask_thr_binary": 0.5} | {},
     "source": {"config": "<path>", "checkpoint": "<path>", "checkpoint_sha256": "<hex>"}}
"""
import json
import math
import os.path as osp
import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

from .files import atomic_write_bytes

__all__ = [
    'FORMAT', 'TASKS', 'TASK_OUTPUTS', 'RESIZE_TYPES', 'RESIZE_BACKENDS', 'INTERPOLATIONS',
    'RESIZE_EDGES', 'POSTPROCESS_KEYS', 'SidecarError', 'ResizeSpec', 'PreprocessSpec',
    'Sidecar', 'sidecar_path', 'load_sidecar', 'write_sidecar'
]

FORMAT = 'mmrepghost.deploy/1'
TASKS = ('detection', 'instance_segmentation', 'classification')
#: the output names each task's graph returns, in order (a classifier: one of two)
TASK_OUTPUTS = MappingProxyType({
    'detection': (('dets', 'labels'), ),
    'instance_segmentation': (('dets', 'labels', 'masks'), ),
    'classification': (('probs', ), ('logits', )),
})
RESIZE_TYPES = ('keep_ratio', 'fixed', 'resize_edge')
RESIZE_BACKENDS = ('cv2', 'pillow')
#: mmcv.imresize's interpolation names per backend
INTERPOLATIONS = MappingProxyType({
    'cv2': ('nearest', 'bilinear', 'bicubic', 'area', 'lanczos'),
    'pillow': ('nearest', 'bilinear', 'bicubic', 'box', 'lanczos', 'hamming'),
})
RESIZE_EDGES = ('short', 'long', 'width', 'height')
COLOR_ORDERS = ('rgb', 'bgr')
#: postprocess keys of detectors (the test_cfg baked into the graph; mask_thr_binary is used)
POSTPROCESS_KEYS = ('score_thr', 'iou_threshold', 'nms_pre', 'max_per_img', 'mask_thr_binary')
_RESIZE_KEYS = {
    'keep_ratio': ('type', 'scale', 'backend', 'interpolation'),
    'fixed': ('type', 'size', 'backend', 'interpolation'),
    'resize_edge': ('type', 'edge', 'scale', 'backend', 'interpolation'),
}
_TOP_KEYS = ('format', 'task', 'export_id', 'input', 'outputs', 'classes', 'preprocess',
             'postprocess', 'source')
_PREPROCESS_KEYS = ('color_order', 'resize', 'center_crop', 'mean', 'std', 'pad_divisor',
                    'pad_value', 'nan_padding')
_SOURCE_KEYS = ('config', 'checkpoint', 'checkpoint_sha256')
_EXPORT_ID = re.compile(r'[0-9a-f]{32}')
_SHA256 = re.compile(r'[0-9a-f]{64}')


class SidecarError(ValueError):
    """A missing, unreadable or invalid sidecar; the message names the key and what is allowed."""


class _Checker:
    """Validation helpers that raise :class:`SidecarError` with the sidecar's name and key."""

    def __init__(self, source: Optional[str]) -> None:
        self.prefix = f'sidecar {source}: ' if source else 'sidecar: '

    def fail(self, key: str, value: Any, allowed: str) -> SidecarError:
        return SidecarError(f'{self.prefix}{key} = {value!r} is not allowed; expected {allowed}')

    def keys(self, where: str, value: Any, required: Sequence[str]) -> Mapping:
        """``value`` is a dict with exactly the keys ``required``."""
        name = where or 'the sidecar'
        if not isinstance(value, Mapping):
            raise SidecarError(f'{self.prefix}{name} must be a JSON object, got '
                               f'{type(value).__name__}')
        dot = f'{where}.' if where else ''
        unknown = [k for k in value if k not in required]
        if unknown:
            raise SidecarError(f'{self.prefix}unknown key {dot}{unknown[0]!r} in {name}; '
                               f'allowed keys: {", ".join(required)}')
        missing = [k for k in required if k not in value]
        if missing:
            raise SidecarError(f'{self.prefix}missing key {dot}{missing[0]} in {name} '
                               f'(required: {", ".join(required)})')
        return value

    def choice(self, key: str, value: Any, allowed: Sequence[str]) -> str:
        if not isinstance(value, str) or value not in allowed:
            raise self.fail(key, value, 'one of ' + ', '.join(repr(a) for a in allowed))
        return value

    def string(self, key: str, value: Any, optional: bool = False) -> Optional[str]:
        if value is None and optional:
            return None
        if not isinstance(value, str) or not value:
            raise self.fail(key, value, 'a non-empty string' + (' or null' if optional else ''))
        return value

    def boolean(self, key: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise self.fail(key, value, 'true or false')
        return value

    def integer(self, key: str, value: Any, minimum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(key, value, f'an integer >= {minimum}')
        return value

    def number(self, key: str, value: Any, low: float = -math.inf, high: float = math.inf,
               positive: bool = False) -> float:
        ok = (not isinstance(value, bool) and isinstance(value, (int, float))
              and math.isfinite(value) and low <= value <= high and (value > 0 or not positive))
        if not ok:
            what = 'a positive number' if positive else 'a finite number'
            if math.isfinite(low) or math.isfinite(high):
                what += f' in [{low}, {high}]'
            raise self.fail(key, value, what)
        return float(value)

    def int_pair(self, key: str, value: Any) -> Tuple[int, int]:
        if (not isinstance(value, (list, tuple)) or len(value) != 2 or any(
                isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value)):
            raise self.fail(key, value, 'a list of 2 positive integers')
        return int(value[0]), int(value[1])

    def triple(self, key: str, value: Any, positive: bool) -> Tuple[float, float, float]:
        if not isinstance(value, (list, tuple)) or len(value) != 3:
            raise self.fail(key, value, 'a list of 3 numbers (one per channel, in color_order)')
        return tuple(self.number(f'{key}[{i}]', v, positive=positive)
                     for i, v in enumerate(value))


@dataclass(frozen=True)
class ResizeSpec:
    """How images are resized (mmdet ``Resize``, mmpretrain ``ResizeEdge``).

    ``type``: ``keep_ratio`` (``scale`` = (a, b): as large as fits, mmcv.imrescale), ``fixed``
    (``size`` = (w, h)) or ``resize_edge`` (``edge`` to ``scale`` pixels, the other edge
    ``int(scale * other / edge)``). ``backend``/``interpolation`` as in mmcv.imresize.
    """
    type: str
    backend: str = 'cv2'
    interpolation: str = 'bilinear'
    scale: Union[int, Tuple[int, int], None] = None
    size: Optional[Tuple[int, int]] = None
    edge: Optional[str] = None

    @classmethod
    def from_dict(cls, d: Mapping, source: Optional[str] = None) -> 'ResizeSpec':
        check = _Checker(source)
        where = 'preprocess.resize'
        if not isinstance(d, Mapping):
            raise check.fail(where, d, 'a JSON object with a "type"')
        kind = check.choice(f'{where}.type', d.get('type'), RESIZE_TYPES)
        check.keys(where, d, _RESIZE_KEYS[kind])
        backend = check.choice(f'{where}.backend', d['backend'], RESIZE_BACKENDS)
        interpolation = d['interpolation']
        if not isinstance(interpolation, str) or interpolation not in INTERPOLATIONS[backend]:
            raise check.fail(f'{where}.interpolation', interpolation,
                             f'one of {", ".join(map(repr, INTERPOLATIONS[backend]))} '
                             f'(backend {backend!r})')
        if kind == 'keep_ratio':
            return cls(kind, backend, interpolation, scale=check.int_pair(f'{where}.scale',
                                                                          d['scale']))
        if kind == 'fixed':
            return cls(kind, backend, interpolation, size=check.int_pair(f'{where}.size',
                                                                         d['size']))
        return cls(kind, backend, interpolation,
                   scale=check.integer(f'{where}.scale', d['scale'], 1),
                   edge=check.choice(f'{where}.edge', d['edge'], RESIZE_EDGES))

    def to_dict(self) -> Dict[str, Any]:
        d: Dict[str, Any] = {'type': self.type}
        if self.type == 'keep_ratio':
            d['scale'] = list(self.scale)
        elif self.type == 'fixed':
            d['size'] = list(self.size)
        else:
            d['edge'] = self.edge
            d['scale'] = self.scale
        d['backend'] = self.backend
        d['interpolation'] = self.interpolation
        return d


@dataclass(frozen=True)
class PreprocessSpec:
    """The test pipeline and data preprocessor: resize, crop, channel order, normalize, pad."""
    color_order: str
    resize: Optional[ResizeSpec]  # None: no resize step
    mean: Tuple[float, float, float]
    std: Tuple[float, float, float]
    center_crop: Optional[Tuple[int, int]] = None
    pad_divisor: int = 1
    pad_value: float = 0.0
    #: pad with NaN, not ``pad_value``: the graph reads each image's extent from it (mmdet
    #: clips boxes per image) and fills ``pad_value`` in itself (detectors)
    nan_padding: bool = False

    @classmethod
    def from_dict(cls, d: Mapping, source: Optional[str] = None) -> 'PreprocessSpec':
        check = _Checker(source)
        check.keys('preprocess', d, _PREPROCESS_KEYS)
        crop = d['center_crop']
        return cls(
            color_order=check.choice('preprocess.color_order', d['color_order'],
                                     COLOR_ORDERS),
            resize=None if d['resize'] is None else ResizeSpec.from_dict(d['resize'], source),
            mean=check.triple('preprocess.mean', d['mean'], positive=False),
            std=check.triple('preprocess.std', d['std'], positive=True),
            center_crop=None if crop is None else check.int_pair('preprocess.center_crop',
                                                                 crop),
            pad_divisor=check.integer('preprocess.pad_divisor', d['pad_divisor'], 1),
            pad_value=check.number('preprocess.pad_value', d['pad_value']),
            nan_padding=check.boolean('preprocess.nan_padding', d['nan_padding']))

    def to_dict(self) -> Dict[str, Any]:
        return {
            'color_order': self.color_order,
            'resize': None if self.resize is None else self.resize.to_dict(),
            'center_crop': None if self.center_crop is None else list(self.center_crop),
            'mean': list(self.mean),
            'std': list(self.std),
            'pad_divisor': self.pad_divisor,
            'pad_value': self.pad_value,
            'nan_padding': self.nan_padding,
        }


def _postprocess(d: Any, task: str, check: _Checker) -> Mapping[str, Union[int, float]]:
    if task == 'classification':
        if d != {}:
            raise check.fail('postprocess', d, '{} for a classifier')
        return MappingProxyType({})
    if not isinstance(d, Mapping):
        raise check.fail('postprocess', d, 'a JSON object')
    unknown = [k for k in d if k not in POSTPROCESS_KEYS]
    if unknown:
        raise SidecarError(f'{check.prefix}unknown key postprocess.{unknown[0]!r}; allowed '
                           f'keys: {", ".join(POSTPROCESS_KEYS)}')
    if task == 'instance_segmentation' and 'mask_thr_binary' not in d:
        raise SidecarError(f'{check.prefix}missing key postprocess.mask_thr_binary '
                           '(required for instance_segmentation: the runtime binarizes masks '
                           'with it)')
    out: Dict[str, Union[int, float]] = {}
    for key in POSTPROCESS_KEYS:
        if key not in d:
            continue
        name = f'postprocess.{key}'
        if key == 'nms_pre':
            out[key] = check.integer(name, d[key], -1)
        elif key == 'max_per_img':
            out[key] = check.integer(name, d[key], 1)
        else:
            out[key] = check.number(name, d[key], 0.0, 1.0)
    return MappingProxyType(out)


@dataclass(frozen=True)
class Sidecar:
    """A validated sidecar; build it with :meth:`from_dict`, serialize with :meth:`to_dict`."""
    task: str
    export_id: str
    input: str
    outputs: Tuple[str, ...]
    classes: Tuple[str, ...]
    preprocess: PreprocessSpec
    postprocess: Mapping[str, Union[int, float]] = field(
        default_factory=lambda: MappingProxyType({}))
    source: Mapping[str, Optional[str]] = field(
        default_factory=lambda: MappingProxyType(dict.fromkeys(_SOURCE_KEYS)))
    format: str = FORMAT

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def mask_thr_binary(self) -> Optional[float]:
        return self.postprocess.get('mask_thr_binary')

    @classmethod
    def from_dict(cls, d: Mapping, source: Optional[str] = None) -> 'Sidecar':
        """Validate ``d`` (a parsed sidecar); ``source`` (its path) prefixes error messages."""
        check = _Checker(source)
        check.keys('', d, _TOP_KEYS)
        if d['format'] != FORMAT:
            raise check.fail('format', d['format'],
                             f'{FORMAT!r} (a sidecar of another format version or program)')
        task = check.choice('task', d['task'], TASKS)
        export_id = d['export_id']
        if not isinstance(export_id, str) or not _EXPORT_ID.fullmatch(export_id):
            raise check.fail('export_id', export_id, 'a uuid hex string (32 lowercase hex '
                             'digits, uuid.uuid4().hex)')
        outputs = d['outputs']
        allowed = TASK_OUTPUTS[task]
        if not isinstance(outputs, (list, tuple)) or tuple(outputs) not in allowed:
            raise check.fail('outputs', outputs, f'for task {task!r}: ' + ' or '.join(
                str(list(names)) for names in allowed))
        classes = d['classes']
        if (not isinstance(classes, (list, tuple)) or not classes
                or not all(isinstance(c, str) for c in classes)):
            raise check.fail('classes', classes, 'a non-empty list of class names (strings)')
        src = check.keys('source', d['source'], _SOURCE_KEYS)
        for key in ('config', 'checkpoint'):
            check.string(f'source.{key}', src[key], optional=True)
        sha = src['checkpoint_sha256']
        if sha is not None and (not isinstance(sha, str) or not _SHA256.fullmatch(sha)):
            raise check.fail('source.checkpoint_sha256', sha,
                             '64 lowercase hex digits (sha256) or null')
        return cls(task=task, export_id=export_id,
                   input=check.string('input', d['input']),
                   outputs=tuple(outputs), classes=tuple(classes),
                   preprocess=PreprocessSpec.from_dict(d['preprocess'], source),
                   postprocess=_postprocess(d['postprocess'], task, check),
                   source=MappingProxyType({k: src[k] for k in _SOURCE_KEYS}))

    def to_dict(self) -> Dict[str, Any]:
        """The JSON-ready dict (keys in the documented order); ``from_dict`` round-trips it."""
        return {
            'format': self.format,
            'task': self.task,
            'export_id': self.export_id,
            'input': self.input,
            'outputs': list(self.outputs),
            'classes': list(self.classes),
            'preprocess': self.preprocess.to_dict(),
            'postprocess': dict(self.postprocess),
            'source': dict(self.source),
        }


def sidecar_path(model_path: str) -> str:
    """``model.onnx`` -> ``model.json`` (the same path, suffix replaced)."""
    model_path = str(model_path)
    root, ext = osp.splitext(model_path)
    if ext.lower() != '.onnx':
        raise SidecarError(f'{model_path}: expected an ONNX model path ending in .onnx (its '
                           'sidecar is the same path ending in .json)')
    return root + '.json'


def load_sidecar(model_path: str) -> Sidecar:
    """Read and validate the sidecar of ``model_path``."""
    path = sidecar_path(model_path)
    if not osp.isfile(path):
        raise SidecarError(
            f'no sidecar for {model_path}: expected {path}, which tools/export_onnx.py '
            '--end2end writes next to the model (export the model with --end2end)')
    try:
        with open(path, 'rb') as f:
            d = json.loads(f.read().decode('utf-8'))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SidecarError(f'sidecar {path} is not valid JSON: {e}') from None
    return Sidecar.from_dict(d, source=path)


def write_sidecar(sidecar: Union[Sidecar, Mapping], path: str, overwrite: bool = False) -> str:
    """Validate and write ``sidecar`` to ``path`` (a ``.json`` path, see :func:`sidecar_path`).

    Written atomically (a temporary file in the same folder, then ``os.replace``); an existing
    file is replaced only with ``overwrite=True`` (``FileExistsError`` otherwise). Returns
    ``path``.
    """
    path = str(path)
    if osp.splitext(path)[1].lower() != '.json':
        raise SidecarError(f'{path}: a sidecar path ends in .json; use sidecar_path(model_path)')
    if not isinstance(sidecar, Sidecar):
        sidecar = Sidecar.from_dict(sidecar)
    text = json.dumps(sidecar.to_dict(), indent=2) + '\n'
    atomic_write_bytes(path, text.encode('utf-8'), overwrite=overwrite)
    return path
