#!/usr/bin/env python
"""Export a RepGhostNet classifier or detector to ONNX, deployed, checked in onnxruntime.

    python tools/export_onnx.py CONFIG CHECKPOINT --out model.onnx [--shape H W] [--force]
        [--end2end [--probs]] [--exporter {torchscript,dynamo}] [--opset N]
        [--pad-channels {16,8,...}]

CHECKPOINT may be a training checkpoint (it is re-parameterized first) or a deploy one
(``tools/reparameterize.py``).

``--end2end`` writes the deployable graph and its sidecar (``model.json`` beside
``model.onnx``) for ``mmrepghost_runtime``, ``tools/deploy_infer.py`` and
``tools/deploy_test.py``: input ``input`` (N, 3, H, W), the preprocessed batch; outputs
``dets`` (N, K, 5) and ``labels`` (N, K) (+ ``masks`` for Mask R-CNN) with decoding, score
threshold, pre-NMS top-k and NMS of the config's ``test_cfg`` in the graph, or a classifier's
``logits`` (``probs`` with ``--probs``). Always the TorchScript exporter at opset 17.

Without it the graph takes ``images`` and returns raw outputs: logits for classifiers; for
detectors the dense head's ``cls_score_<level>`` and ``bbox_pred_<level>`` maps (two-stage:
the RPN's), to be decoded by mmdet's ``head.predict_by_feat`` (see
``mmrepghost/deploy/onnx.py``).

Every tensor's symbolic shape is recorded in the graph (onnxruntime fuses more with it; the
graph stays dynamic). ``--pad-channels 16`` also zero-pads conv channels to multiples of 16,
the fp32 lanes of AVX-512 and the block of onnxruntime's NCHWc layout (8 for AVX2): the same
function, a few percent faster on such CPUs (docs/deploy.md).

Either file is run in onnxruntime at two sizes and batch sizes and compared with PyTorch; the
tool fails (exit 1) if any output differs by more than ``--atol`` times max(1, the largest
output magnitude), or if detections differ in number or labels. OUT (and its sidecar) is
written atomically, replaced only with ``--force``, and never CHECKPOINT or CONFIG.
"""
import argparse
import copy
import os.path as osp
import sys

import torch

from mmrepghost.deploy import LOAD_ERRORS, load_trained_model, reparameterize_model
from mmrepghost.deploy.onnx import (DEFAULT_OPSETS, EXPORTER_OPSETS, RawOutputs,
                                    compare_end2end, compare_with_onnxruntime, export_end2end,
                                    export_onnx, onnx_op_types)
from mmrepghost.utils.timing import measure_latency

#: --pad-channels values: fp32 lanes of SIMD registers (AVX-512 16, AVX2 8, NEON 4)
PAD_MULTIPLES = (4, 8, 16, 32, 64)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config', help='mmdet or mmpretrain config')
    parser.add_argument('checkpoint', help='train or deploy checkpoint of that config')
    parser.add_argument('--out', required=True, help='output .onnx file')
    parser.add_argument('--shape', nargs=2, type=int, default=[224, 224], metavar=('H', 'W'),
                        help='export input size (multiples of 32)')
    parser.add_argument('--atol', type=float, default=1e-4,
                        help='largest accepted |onnxruntime - PyTorch| / max(1, |output|) '
                        '(default 1e-4)')
    parser.add_argument('--exporter', choices=list(EXPORTER_OPSETS), default='torchscript',
                        help="torch.onnx.export's exporter: torchscript (dynamo=False, the "
                        'default) or dynamo (dynamo=True, needs onnxscript)')
    parser.add_argument('--opset', type=int, default=None,
                        help='ONNX opset: 11-20 for torchscript (default 17), 18-20 for '
                        'dynamo (default 18)')
    parser.add_argument('--latency', type=int, default=0, metavar='RUNS',
                        help='also time batch-1 inference RUNS times (median): train structure '
                        'and deployed in PyTorch, deployed in onnxruntime (default: off)')
    parser.add_argument('--end2end', action='store_true',
                        help='deployable graph with decoding and NMS, plus its sidecar JSON')
    parser.add_argument('--probs', action='store_true',
                        help='with --end2end: a classifier returns softmax probs, not logits')
    parser.add_argument('--pad-channels', type=int, default=0, metavar='N',
                        help='zero-pad conv output channels to multiples of N: '
                        f'{", ".join(map(str, PAD_MULTIPLES))} (16 for AVX-512, 8 for AVX2; '
                        'same function; default 0: off)')
    parser.add_argument('--force', action='store_true', help='replace an existing --out')
    args = parser.parse_args(argv)
    if not args.out.endswith('.onnx'):
        parser.error(f'--out must end with .onnx, got {args.out!r}')
    if args.probs and not args.end2end:
        parser.error('--probs needs --end2end')
    if args.end2end and (args.exporter != 'torchscript' or args.opset not in (None, 17)):
        parser.error('--end2end always uses the torchscript exporter at opset 17 (its NMS '
                     'and RoiAlign are written for it); drop --exporter/--opset')
    if any(s < 32 or s % 32 for s in args.shape):
        parser.error(f'--shape {args.shape}: H and W must be positive multiples of 32')
    opsets = EXPORTER_OPSETS[args.exporter]
    if args.opset is None:
        args.opset = DEFAULT_OPSETS[args.exporter]
    if args.opset not in opsets:
        parser.error(f'--opset must be in [{opsets[0]}, {opsets[-1]}], got {args.opset} '
                     f'(--exporter {args.exporter})')
    if args.pad_channels and args.pad_channels not in PAD_MULTIPLES:
        parser.error(f'--pad-channels must be 0 (off) or one of '
                     f'{", ".join(map(str, PAD_MULTIPLES))}, got {args.pad_channels}')
    if not args.atol > 0:
        parser.error(f'--atol must be > 0, got {args.atol}')
    if args.latency < 0:
        parser.error(f'--latency must be >= 0 runs (0: off), got {args.latency}')
    outputs = [args.out] + ([osp.splitext(args.out)[0] + '.json'] if args.end2end else [])
    for out in outputs:
        for name in ('checkpoint', 'config'):
            if osp.abspath(out) == osp.abspath(getattr(args, name)):
                parser.error(f'--out {args.out!r} would overwrite {name.upper()} ({out})')
        if osp.exists(out) and not args.force:
            parser.error(f'{out} exists; pass --force to replace it')
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        loaded = load_trained_model(args.config, args.checkpoint)
    except LOAD_ERRORS as error:
        print(f'error: {error}', file=sys.stderr)
        return 2
    model = loaded.model
    train_model = None if loaded.is_deploy else copy.deepcopy(model)
    if not loaded.is_deploy:
        fused = reparameterize_model(model, verify=True, logger='silent')
        print(f're-parameterized {args.checkpoint}: max abs diff {fused.max_abs_diff:.3g}')
    height, width = args.shape
    checks = [torch.randn(1, 3, height, width), torch.randn(2, 3, height + 64, width - 32)]
    if args.end2end:
        try:
            sidecar = export_end2end(model, loaded.cfg, args.out, args.checkpoint,
                                     loaded.meta.get('dataset_meta', {}).get('classes', ()),
                                     (1, 3, height, width), args.force, args.probs,
                                     args.pad_channels)
        except ValueError as error:
            print(f'error: {error}', file=sys.stderr)
            return 2
        names = list(sidecar.outputs)
        print(f'baked into the graph: {sidecar.postprocess}; sidecar '
              f'{osp.splitext(args.out)[0]}.json ({len(sidecar.classes)} classes)')
        diffs = compare_end2end(model, args.out, checks, args.probs)
        exporter = 'end-to-end, torchscript exporter, opset 17'
    else:
        names = export_onnx(model, args.out, (1, 3, height, width), args.opset, args.force,
                            exporter=args.exporter, pad_channels_to=args.pad_channels)
        diffs = compare_with_onnxruntime(model, args.out, checks)
        exporter = f'{args.exporter} exporter, opset {args.opset}'
    ops = onnx_op_types(args.out)
    print(f'exported {args.out} ({exporter}): outputs {names}; {sum(ops.values())} nodes '
          f'({", ".join(f"{op} {n}" for op, n in ops.most_common())})')
    worst = 0.0
    for x, (diff, scale) in zip(checks, diffs):
        print(f'onnxruntime vs PyTorch on {tuple(x.shape)}: max abs diff {diff:.3g} '
              f'(outputs up to {scale:.3g})')
        worst = max(worst, diff / max(1.0, scale))
    if worst > args.atol:
        print(f'error: onnxruntime differs from PyTorch by {worst:.3g} of the output scale > '
              f'--atol {args.atol} (inf: other detections or labels)', file=sys.stderr)
        return 1
    if args.latency and not args.end2end:
        print_latency(train_model, model, args.out, checks[0], args.latency)
    return 0


def print_latency(train_model, deployed, onnx_file, x, runs):
    """One line: median ms of the train structure, the deployed net, and onnxruntime."""
    import onnxruntime as ort
    session = ort.InferenceSession(onnx_file, providers=['CPUExecutionProvider'])
    feed = {'images': x.numpy()}
    timed = [('deployed (onnxruntime)', lambda: session.run(None, feed))]
    for name, net in (('train structure (PyTorch)', train_model),
                      ('deployed (PyTorch)', deployed)):
        if net is not None:
            wrapper = RawOutputs(net).eval()
            timed.insert(len(timed) - 1, (name, lambda w=wrapper: w(x)))
    with torch.no_grad():
        results = [(name, measure_latency(fn, runs)) for name, fn in timed]
    medians = ', '.join(f'{name} {lat.median_ms:.1f} ms' for name, lat in results)
    print(f'latency, batch 1, {x.shape[2]}x{x.shape[3]}, {torch.get_num_threads()} threads, '
          f'median of {runs}: {medians}')


if __name__ == '__main__':
    sys.exit(main())
