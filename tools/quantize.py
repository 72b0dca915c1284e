#!/usr/bin/env python
"""Quantize a deployed model to INT8 (post-training, calibrated on the config's train split).

    python tools/quantize.py CONFIG MODEL --out OUT [--backend onnxruntime|openvino|torchao]
        [--calib-images N] [--exclude PATTERN ...] [--auto-exclude] [--threads T]
        [--runs R] [--force]

MODEL is the end-to-end .onnx file of ``tools/export_onnx.py --end2end`` (with its sidecar)
for ``onnxruntime`` and ``openvino`` (NNCF), or a deploy checkpoint (``tools/reparameterize.py``)
for ``torchao``; OUT is the same kind of file (``.onnx`` + sidecar, run by
``mmrepghost_runtime``, ``tools/deploy_infer.py`` and ``tools/deploy_test.py``; ``.pt2`` for
torchao). Decoding, score filtering and NMS stay fp32.

``--exclude`` keeps layers in fp32 by name (shell-style patterns, e.g.
``'*/blocks.0/*'``); ``--auto-exclude`` also keeps those that measurements on this machine
show slower in int8 (or worth less than the quantize/dequantize they need) or too lossy.
Beside OUT the report ``<OUT stem>.quantization.md`` / ``.json`` lists every layer's
precision and why, its error alone (SQNR) and kernel times, and the latency of fp32 and
int8 measured interleaved. OUT is written atomically and never over MODEL or CONFIG.
"""
import argparse
import sys

from mmrepghost.deploy import LOAD_ERRORS
from mmrepghost.deploy.quantize import (BACKENDS, DEFAULT_CALIB_IMAGES, QuantizeError, quantize,
                                        report_paths)
from mmrepghost_runtime import ImageError, ModelError, SidecarError


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config', help='the mmdet or mmpretrain config the model was trained '
                        'with (its train split calibrates)')
    parser.add_argument('model', help='exported .onnx with its sidecar, or (torchao) a deploy '
                        'checkpoint')
    parser.add_argument('--out', required=True, help='the int8 model to write')
    parser.add_argument('--backend', choices=list(BACKENDS), default='onnxruntime')
    parser.add_argument('--calib-images', type=int, default=DEFAULT_CALIB_IMAGES, metavar='N',
                        help=f'calibration images from the train split (default '
                        f'{DEFAULT_CALIB_IMAGES})')
    parser.add_argument('--exclude', nargs='+', default=[], metavar='PATTERN',
                        help='layers kept fp32 (shell-style patterns of layer names)')
    parser.add_argument('--auto-exclude', action='store_true',
                        help='also keep fp32 the layers measured slower or too lossy in int8')
    parser.add_argument('--threads', type=int, default=1,
                        help='threads for the latency measurements (default 1)')
    parser.add_argument('--runs', type=int, default=20,
                        help='interleaved timing runs (default 20)')
    parser.add_argument('--force', action='store_true', help='replace an existing OUT')
    args = parser.parse_args(argv)
    for name in ('calib_images', 'threads', 'runs'):
        if getattr(args, name) < 1:
            parser.error(f'--{name.replace("_", "-")} must be >= 1, got {getattr(args, name)}')
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        report = quantize(args.backend, args.config, args.model, args.out, args.calib_images,
                          args.exclude, args.auto_exclude, args.threads, args.runs, args.force)
    except (QuantizeError, SidecarError, ImageError, ModelError, FileExistsError,
            FileNotFoundError, ImportError, *LOAD_ERRORS) as error:
        print(f'error: {error}', file=sys.stderr)
        return 2
    summary = report.markdown().split('\n\n| layer')[0]
    print(summary)
    print(f'wrote {args.out} and its report {" / ".join(report_paths(args.out))}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
