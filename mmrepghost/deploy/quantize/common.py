"""What every INT8 backend shares: errors, optional imports, calibration data, the report.

Calibration images come from the config's **train** split (``train_dataloader.dataset``,
never the evaluation split) and go through the deployment's own preprocessing
(:mod:`mmrepghost_runtime.preprocess` with the config's test pipeline, as the deployed model
sees images), one image at a time: nothing holds more than one batch.
"""
import fnmatch
import importlib
import json
import os.path as osp
from dataclasses import asdict, dataclass, field
from typing import Dict, Iterable, Iterator, List, Optional, Sequence

import numpy as np

from mmrepghost_runtime.files import atomic_write_bytes

__all__ = [
    'BACKENDS', 'QuantizeError', 'require', 'calibration_paths', 'calibration_inputs',
    'layer_kind', 'match_patterns', 'LayerRecord', 'QuantizeReport', 'report_paths', 'sqnr_db',
    'cosine'
]

#: backend -> the pip package its quantizer needs
BACKENDS = {'onnxruntime': 'onnxruntime', 'torchao': 'torchao', 'openvino': 'nncf'}


class QuantizeError(ValueError):
    """Input that cannot be quantized; the message names the value and what is allowed."""


def require(module: str, pip: str, purpose: str):
    """``importlib.import_module(module)``, or an ``ImportError`` naming the pip package."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(f'{purpose} needs the Python package {module!r}, which is not '
                          f'installed ({e}); install it with `pip install {pip}` (pinned: '
                          f'`pip install -c requirements/constraints.txt {pip}`)') from None


def calibration_paths(cfg, num: int, seed: int = 0) -> List[str]:
    """``num`` image paths of the config's train split, spread over it (seeded, sorted).

    ``QuantizeError`` when the split is empty or has fewer than ``num`` images (the message
    says how many it has).
    """
    from mmengine.registry import DATASETS, init_default_scope
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise QuantizeError(f'calibration images = {num!r}: expected a positive integer')
    train = cfg.get('train_dataloader')
    if not train or not train.get('dataset'):
        raise QuantizeError('the config has no train_dataloader.dataset: calibration images '
                            'come from the train split (never the evaluation split)')
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    dataset_cfg = train.dataset.copy()
    dataset_cfg['pipeline'] = []  # only the file list is read
    dataset = DATASETS.build(dataset_cfg)
    where = f"train split ({dataset_cfg.get('data_root') or dataset_cfg.get('type')})"
    total = len(dataset)
    if total == 0:
        raise QuantizeError(f'the calibration split is empty: the config\'s {where} has no '
                            'images')
    if total < num:
        raise QuantizeError(f"the config's {where} has {total} images, fewer than the "
                            f'{num} calibration images asked for; pass --calib-images {total} '
                            'or fewer')
    chosen = np.sort(np.random.default_rng(seed).choice(total, num, replace=False))
    return [dataset.get_data_info(int(i))['img_path'] for i in chosen]


def calibration_inputs(paths: Sequence[str], preprocess: dict,
                       nan_padding: Optional[bool] = None) -> Iterator[np.ndarray]:
    """Each image of ``paths`` as a preprocessed ``(1, 3, H, W)`` float32 batch.

    ``preprocess`` is a sidecar ``preprocess`` dict (``preprocess_spec(cfg)`` or a model's
    sidecar); ``nan_padding`` overrides its flag (False: padding holds the pad value, as a
    graph without the end-to-end padding reader expects).
    """
    from mmrepghost_runtime import read_image
    from mmrepghost_runtime.preprocess import preprocess as run_preprocess
    spec = dict(preprocess)
    if nan_padding is not None:
        spec['nan_padding'] = nan_padding
    spec.setdefault('nan_padding', False)
    for path in paths:
        batch, _ = run_preprocess([read_image(path)[0]], spec)
        yield batch


def layer_kind(op: str, weight: Sequence[int], group: int = 1, strides: Sequence[int] = (),
               out_size: Sequence[int] = ()) -> str:
    """How reports name a layer: ``'conv 3x3 s2 dw 24->24 @28x28'`` (kernel, stride,
    depthwise or grouped, channels, **output** size), ``'gemm 960->1280'``.

    ``weight``: the conv weight's shape (out, in / group, kh, kw) or a linear's (out, in).
    """
    op = op.lower()
    at = '@' + 'x'.join(map(str, out_size)) if len(out_size) else ''
    if op != 'conv' or len(weight) < 3:
        text = f'{op} {weight[1]}->{weight[0]}' if len(weight) == 2 else op
        return ' '.join(t for t in (text, at) if t)
    in_ch = weight[1] * group
    parts = ['conv ' + 'x'.join(map(str, weight[2:]))]
    if any(s > 1 for s in strides):
        parts.append('s' + 'x'.join(map(str, dict.fromkeys(strides))))
    if group > 1:
        parts.append('dw' if group == in_ch == weight[0] else f'g{group}')
    parts += [f'{in_ch}->{weight[0]}', at]
    return ' '.join(t for t in parts if t)


def match_patterns(names: Iterable[str], patterns: Sequence[str], what: str) -> Dict[str, str]:
    """``{name: first matching pattern}`` for shell-style ``patterns`` (``fnmatch``).

    ``QuantizeError`` naming a pattern that matches none of ``names`` (with examples).
    """
    names = list(names)
    matched: Dict[str, str] = {}
    for pattern in patterns:
        hits = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            examples = ', '.join(repr(n) for n in names[:3])
            raise QuantizeError(f'--exclude {pattern!r} matches none of the {len(names)} '
                                f'quantizable {what} (e.g. {examples}); patterns are '
                                "shell-style ('*' matches anything, '/' included)")
        for name in hits:
            matched.setdefault(name, pattern)
    return matched


def sqnr_db(reference: np.ndarray, other: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio of ``other`` against ``reference``, in dB."""
    reference = np.asarray(reference, np.float64).ravel()
    noise = float(np.sum((reference - np.asarray(other, np.float64).ravel()) ** 2))
    signal = float(np.sum(reference ** 2))
    if noise == 0:
        return float('inf')
    return 10 * np.log10(max(signal, 1e-30) / noise)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two arrays, flattened."""
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    denominator = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / denominator) if denominator else float(np.array_equal(a, b))


@dataclass
class LayerRecord:
    """One quantizable layer and the decision taken for it."""
    name: str  # ONNX node name (onnxruntime, openvino) or module path (torchao)
    kind: str  # e.g. 'conv 3x3 dw 24->24 @56x56'
    precision: str  # 'int8' or 'fp32'
    reason: str = ''  # why it stayed fp32 (or how it was chosen)
    fp32_ms: Optional[float] = None  # the layer alone, median, fp32 kernel
    int8_ms: Optional[float] = None  # the layer alone, median, int8 kernel
    sqnr_db: Optional[float] = None  # the layer alone on calibration inputs, int8 vs fp32
    cosine: Optional[float] = None


@dataclass
class QuantizeReport:
    """What ``tools/quantize.py`` writes beside its output and prints."""
    backend: str
    model: str
    out: str
    config: str
    calibration: Dict = field(default_factory=dict)  # split, images, seed, method
    layers: List[LayerRecord] = field(default_factory=list)
    latency: Dict = field(default_factory=dict)  # fp32_ms, int8_ms, ratio, threads, batch...
    outputs: Dict = field(default_factory=dict)  # output cosine / SQNR, int8 vs fp32
    notes: List[str] = field(default_factory=list)

    @property
    def excluded(self) -> Dict[str, str]:
        return {r.name: r.reason for r in self.layers if r.precision == 'fp32'}

    def to_dict(self) -> dict:
        return asdict(self)

    def markdown(self) -> str:
        """The report as Markdown: summary, latency, outputs, then one row per layer."""
        int8 = sum(r.precision == 'int8' for r in self.layers)
        lines = [f'# INT8 quantization report ({self.backend})', '',
                 f'- model: `{self.model}` -> `{self.out}`', f'- config: `{self.config}`',
                 '- calibration: ' + ', '.join(f'{k} {v}' for k, v in self.calibration.items()),
                 f'- layers: {int8} int8, {len(self.layers) - int8} fp32']
        if self.latency:
            lines.append('- latency: ' + ', '.join(f'{k} {_fmt(v)}'
                                                   for k, v in self.latency.items()))
        if self.outputs:
            lines.append('- outputs int8 vs fp32: ' + ', '.join(
                f'{k} {_fmt(v)}' for k, v in self.outputs.items()))
        lines += [f'- note: {note}' for note in self.notes]
        lines += ['', '| layer | kind | precision | fp32 ms | int8 ms | int8/fp32 | SQNR dB | '
                  'why |', '|---|---|---|---:|---:|---:|---:|---|']
        for r in self.layers:
            ratio = (r.int8_ms / r.fp32_ms if r.int8_ms is not None and r.fp32_ms else None)
            lines.append(f'| `{r.name}` | {r.kind} | {r.precision} | {_fmt(r.fp32_ms)} | '
                         f'{_fmt(r.int8_ms)} | {_fmt(ratio, 2)} | {_fmt(r.sqnr_db, 1)} | '
                         f'{r.reason} |')
        return '\n'.join(lines) + '\n'

    def write(self, out: str, overwrite: bool = False) -> List[str]:
        """Write ``<out stem>.quantization.json`` and ``.md`` atomically; return the paths."""
        paths = report_paths(out)
        atomic_write_bytes(paths[0], (json.dumps(self.to_dict(), indent=2) + '\n').encode(),
                           overwrite=overwrite)
        atomic_write_bytes(paths[1], self.markdown().encode(), overwrite=overwrite)
        return list(paths)


def report_paths(out: str):
    """``model_int8.onnx`` -> (``model_int8.quantization.json``, ``...quantization.md``)."""
    stem = osp.splitext(str(out))[0]
    return stem + '.quantization.json', stem + '.quantization.md'


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return '-'
    if isinstance(value, float):
        return f'{value:.{digits}f}' if abs(value) < 1e4 else f'{value:.3g}'
    return str(value)
