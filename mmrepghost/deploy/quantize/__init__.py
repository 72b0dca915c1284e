"""INT8 post-training quantization of deployed models (``tools/quantize.py``).

:func:`quantize` is the one entry point: it reads the config, picks the calibration images
from its train split and hands them to a backend module (``onnxruntime_backend``,
``openvino_backend``, ``torchao_backend``), then writes the report beside the output.
"""
import os.path as osp
from typing import Callable, Sequence

from .common import (BACKENDS, LayerRecord, QuantizeError, QuantizeReport, calibration_inputs,
                     calibration_paths, cosine, match_patterns, report_paths, require, sqnr_db)

__all__ = [
    'BACKENDS', 'DEFAULT_CALIB_IMAGES', 'LayerRecord', 'QuantizeError', 'QuantizeReport',
    'calibration_inputs', 'calibration_paths', 'cosine', 'match_patterns', 'quantize',
    'report_paths', 'require', 'sqnr_db'
]

DEFAULT_CALIB_IMAGES = 256
#: what each backend takes as MODEL and writes as OUT
MODEL_SUFFIXES = {'onnxruntime': ('.onnx', '.onnx'), 'openvino': ('.onnx', '.onnx'),
                  'torchao': ('.pth', '.pt2')}


def _check_args(backend: str, config: str, model: str, out: str, overwrite: bool) -> None:
    if backend not in BACKENDS:
        raise QuantizeError(f'backend {backend!r} is not one of {", ".join(BACKENDS)}')
    model_suffix, out_suffix = MODEL_SUFFIXES[backend]
    if not str(model).endswith(model_suffix):
        what = ('an exported .onnx file with its sidecar (tools/export_onnx.py --end2end)'
                if model_suffix == '.onnx' else 'a deploy checkpoint .pth '
                '(tools/reparameterize.py)')
        raise QuantizeError(f'MODEL {model!r}: the {backend} backend quantizes {what}')
    if not str(out).endswith(out_suffix):
        raise QuantizeError(f'OUT {out!r}: the {backend} backend writes a {out_suffix} file')
    for path, what in ((model, 'MODEL'), (config, 'CONFIG')):
        if osp.abspath(out) == osp.abspath(path):
            raise QuantizeError(f'OUT {out!r} is {what}; the input is never overwritten: '
                                'choose another output path')
    for path in (model, config):
        if not osp.isfile(path):
            raise FileNotFoundError(f'{path}: no such file')
    for path in report_paths(out):
        if osp.exists(path) and not overwrite:
            raise FileExistsError(f'{path} exists; pass --force to replace it')


def quantize(backend: str, config: str, model: str, out: str,
             calib_images: int = DEFAULT_CALIB_IMAGES, exclude: Sequence[str] = (),
             auto_exclude: bool = False, threads: int = 1, runs: int = 20,
             overwrite: bool = False, log: Callable[[str], None] = print) -> QuantizeReport:
    """Quantize ``model`` (exported .onnx + sidecar, or a torchao deploy checkpoint) to ``out``.

    Calibration: ``calib_images`` images of ``config``'s train split. ``exclude``: shell-style
    patterns of layer names kept fp32; ``auto_exclude``: also keep in fp32 the layers that
    measurements show slower or too lossy in int8. Writes ``out`` (and, for ONNX, its sidecar)
    atomically, then the report (``<out stem>.quantization.json`` / ``.md``). Errors:
    ``QuantizeError`` (bad input), ``FileExistsError``, ``FileNotFoundError``, ``ImportError``
    naming the pip package of a missing backend; nothing is written on any of them.
    """
    from mmengine.config import Config
    _check_args(backend, config, model, out, overwrite)
    if backend == 'torchao':
        require('torchao', 'torchao', 'the torchao backend')
    elif backend == 'openvino':
        require('nncf', 'nncf', 'the openvino backend (NNCF quantizes for OpenVINO)')
        require('openvino', 'openvino', 'the openvino backend')
    else:
        require('onnxruntime', 'onnxruntime', 'the onnxruntime backend')
    cfg = Config.fromfile(config)
    paths = calibration_paths(cfg, calib_images)
    common = dict(exclude=exclude, auto_exclude=auto_exclude, threads=threads, runs=runs,
                  overwrite=overwrite, log=log)
    if backend == 'onnxruntime':
        from .onnxruntime_backend import quantize_onnxruntime
        report = quantize_onnxruntime(model, out, paths, config=config, **common)
    elif backend == 'openvino':
        from .openvino_backend import quantize_openvino
        report = quantize_openvino(model, out, paths, **common)
    else:
        from .torchao_backend import quantize_torchao
        report = quantize_torchao(config, model, out, paths, **common)
    report.config = config
    report.write(out, overwrite=overwrite)
    return report
