#!/usr/bin/env python
"""Run an end-to-end ONNX export on images without PyTorch: print and draw the predictions.

    python tools/deploy_infer.py model.onnx a.jpg b.png --out-dir work_dirs/infer \
        [--backend onnxruntime|openvino] [--batch-size N] [--score-thr T] [--threads N]

MODEL is an end-to-end ``.onnx`` file with its sidecar ``MODEL.json`` beside it (both written
by ``tools/export_onnx.py --end2end``). Images are decoded and preprocessed exactly as mmdet's
and mmpretrain's test pipelines (:mod:`mmrepghost_runtime`; no torch, mmcv, mmengine, mmdet or
mmpretrain is imported). For each image the tool prints the detections (``class score [x1, y1,
x2, y2]`` in the image's pixels, at least ``--score-thr``) or the top-5 classes, and writes the
drawing into ``--out-dir`` under the image's name (``.png`` for PNG inputs, ``.jpg``
otherwise; ``<name>_pred.<ext>`` where that name is an input image), atomically. The model and
every image are checked before anything is written: a bad one exits with status 2 and one
``error: ...`` line, and no file is written. Existing outputs are replaced only with
``--force``; an input image is never replaced.
"""
import argparse
import importlib.util
import os.path as osp
import sys

if importlib.util.find_spec('mmrepghost_runtime') is None:  # an install predating the package
    sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmrepghost_runtime import (BACKENDS, Detections, draw_result, load_model,  # noqa: E402
                                plan_outputs, read_image, write_image)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f'{text!r} is not a positive integer')
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f'{text!r} is not a number in [0, 1]')
    return value


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('model', help='end-to-end ONNX file (its sidecar MODEL.json beside it)')
    parser.add_argument('images', nargs='+', help='image files')
    parser.add_argument('--out-dir', required=True, help='folder for the drawn images')
    parser.add_argument('--backend', default='onnxruntime', choices=BACKENDS,
                        help='inference backend (default: onnxruntime)')
    parser.add_argument('--batch-size', type=_positive_int, default=1,
                        help='images per inference batch (default: 1)')
    parser.add_argument('--score-thr', type=_fraction, default=0.3,
                        help='detections shown with at least this score (default: 0.3)')
    parser.add_argument('--threads', type=_positive_int, default=None,
                        help="inference threads (default: the backend's)")
    parser.add_argument('--force', action='store_true', help='replace existing outputs')
    return parser.parse_args(argv)


def _report(path: str, result) -> str:
    if isinstance(result, Detections):
        lines = [f'{path}: {len(result)} detection{"" if len(result) == 1 else "s"}']
        lines += [f'  {name} {score:.2f} [{", ".join(f"{v:.1f}" for v in box)}]'
                  for name, score, box in zip(result.class_names, result.scores,
                                              result.bboxes)]
    else:
        lines = [f'{path}: top-{len(result.top_names)}']
        lines += [f'  {name} {score:.3f}'
                  for name, score in zip(result.top_names, result.top_scores)]
    return '\n'.join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:  # everything is checked before the first output is written
        model = load_model(args.model, args.backend, args.threads)
        notes = [read_image(path)[1] for path in args.images]
        outputs = plan_outputs(args.images, args.out_dir, overwrite=args.force)
    except (ValueError, ImportError, OSError) as e:
        print('error: ' + ' '.join(str(e).split()), file=sys.stderr)
        return 2
    for path, image_notes in zip(args.images, notes):
        for note in image_notes:
            print(f'{path}: note: {note}')
    for start in range(0, len(args.images), args.batch_size):
        paths = args.images[start:start + args.batch_size]
        images = [read_image(path, with_notes=False)[0] for path in paths]
        results = model.predict(images, batch_size=len(images), score_thr=args.score_thr)
        for path, image, result, out in zip(paths, images, results,
                                            outputs[start:start + args.batch_size]):
            print(_report(path, result))
            write_image(out, draw_result(image, result), overwrite=args.force)
            print(f'  -> {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
