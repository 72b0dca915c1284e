#!/usr/bin/env python
"""Evaluate an exported end-to-end model on the config's test set, as ``mim test`` would.

    python tools/deploy_test.py CONFIG MODEL [--backend onnxruntime|openvino]
        [--batch-size N] [--threads N] [--cfg-options KEY=VALUE ...]

MODEL is an ``.onnx`` file written by ``tools/export_onnx.py --end2end`` with its sidecar
beside it (or by ``tools/quantize.py``: the same kind of file, int8), or a ``.pt2`` program of
``tools/quantize.py --backend torchao`` (evaluated in PyTorch, eager, with the config's own
data pipeline and head post-processing). The model evaluated is the PyTorch-free runtime
(``mmrepghost_runtime``: image reading, preprocessing, backend session, postprocessing); the
config provides the test images with their annotations and its evaluator (CocoMetric bbox/segm,
Accuracy, ...). The last line has the metrics in ``mim test``'s format (``coco/bbox_mAP: 0.6600
...``). Exit code 2 with one ``error:`` line on bad input (a raw-output file, a missing or
foreign sidecar, a config whose classes differ from the model's, a backend that is not
installed).
"""
import argparse
import sys

from mmengine.config import Config, DictAction

# (importing mmrepghost registers the configs' modules and enables mmrepghost:: bases)
from mmrepghost.deploy.backend_eval import evaluate_deployed, format_metrics

BACKENDS = ('onnxruntime', 'openvino')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config', help='the mmdet or mmpretrain config the model was trained with')
    parser.add_argument('model', help='end-to-end .onnx file (tools/export_onnx.py --end2end, '
                        'tools/quantize.py) or a torchao .pt2 (tools/quantize.py)')
    parser.add_argument('--backend', choices=BACKENDS, default='onnxruntime')
    parser.add_argument('--batch-size', type=int, default=1,
                        help='images per inference (padded together; default 1)')
    parser.add_argument('--threads', type=int, default=None,
                        help="backend threads (default: the backend's own default)")
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='override config settings (e.g. the test set paths)')
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f'--batch-size must be >= 1, got {args.batch_size}')
    if args.threads is not None and args.threads < 1:
        parser.error(f'--threads must be >= 1, got {args.threads}')
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    cfg.merge_from_dict(args.cfg_options)

    def progress(done, total):
        if done == total or done % max(1, 20 * args.batch_size) < args.batch_size:
            print(f'[{done}/{total}] images', flush=True)

    backend = 'torchao' if args.model.endswith('.pt2') else args.backend
    try:
        if backend == 'torchao':
            from mmrepghost.deploy.quantize.torchao_backend import evaluate_torchao
            metrics = evaluate_torchao(cfg, args.model)
        else:
            metrics = evaluate_deployed(cfg, args.model, args.backend, args.batch_size,
                                        args.threads, progress)
    except (ValueError, ImportError, FileNotFoundError) as error:
        print(f'error: {error}', file=sys.stderr)
        return 2
    print(f'deploy_test ({backend}, batch {args.batch_size}) {args.model}: '
          f'{format_metrics(metrics)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
