#!/usr/bin/env python
"""Draw a detector's predictions on a few images into one PNG (mmdet's DetInferencer).

    python tools/show_predictions.py CONFIG CHECKPOINT --images data/tiny_coco/val2017 \
        --num 4 --out work_dirs/predictions.png

The first ``--num`` images of ``--images`` (a folder, sorted by name, or image files) are run
through mmdet's ``DetInferencer``; its visualizer draws boxes, masks and class names above
``--score-thr``, and the drawings are tiled side by side into ``--out``, written atomically
(an existing file is replaced only with ``--force``). The weights are loaded by
:func:`mmrepghost.deploy.load_trained_model` (train or deploy checkpoint, every key and shape
checked), not by the inferencer, which would start from random weights for any key that does
not fit; a missing, corrupted, unsafe or mismatched checkpoint exits with status 2.
"""
import argparse
import os
import os.path as osp
import sys

import cv2
import numpy as np

from mmrepghost.deploy import LOAD_ERRORS, load_trained_model
from mmrepghost.utils import atomic_write

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config', help='mmdet config (e.g. configs/retinanet/...py)')
    parser.add_argument('checkpoint', help='trained checkpoint of that config')
    parser.add_argument('--images', nargs='+', required=True,
                        help='an image folder, or image files')
    parser.add_argument('--num', type=int, default=4, help='images to draw (1-16)')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='draw predictions with at least this score (0-1)')
    parser.add_argument('--out', required=True, help='output PNG file')
    parser.add_argument('--force', action='store_true', help='replace an existing --out')
    args = parser.parse_args(argv)
    if not 1 <= args.num <= 16:
        parser.error(f'--num must be in [1, 16], got {args.num}')
    if not 0 <= args.score_thr <= 1:
        parser.error(f'--score-thr must be in [0, 1], got {args.score_thr}')
    if not args.out.lower().endswith('.png'):
        parser.error(f'--out must be a .png file, got {args.out!r}')
    if osp.exists(args.out) and not args.force:
        parser.error(f'--out {args.out} exists; pass --force to replace it')
    return args


def list_images(paths, num):
    """The first ``num`` image files of ``paths`` (folders expanded in name order)."""
    files = []
    for path in paths:
        if osp.isdir(path):
            files += sorted(osp.join(path, name) for name in os.listdir(path)
                            if name.lower().endswith(IMAGE_SUFFIXES))
        elif osp.isfile(path):
            files.append(path)
        else:
            raise FileNotFoundError(f'--images {path!r} is neither a folder nor a file')
    if not files:
        raise FileNotFoundError(f'no {"/".join(IMAGE_SUFFIXES)} images in {paths}')
    return files[:num]


def tile(images, gap=4):
    """Place RGB images side by side on a white canvas as tall as the tallest."""
    height = max(image.shape[0] for image in images)
    width = sum(image.shape[1] for image in images) + gap * (len(images) - 1)
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    x = 0
    for image in images:
        canvas[:image.shape[0], x:x + image.shape[1]] = image
        x += image.shape[1] + gap
    return canvas


def build_inferencer(config: str, checkpoint: str):
    """``DetInferencer`` of ``config`` holding the checked weights of ``checkpoint``."""
    import warnings

    from mmdet.apis import DetInferencer
    loaded = load_trained_model(config, checkpoint)
    with warnings.catch_warnings():  # 'weights is None': they are set right below
        warnings.simplefilter('ignore')
        inferencer = DetInferencer(model=loaded.cfg, weights=None, device='cpu',
                                   show_progress=False)
    dataset_meta = loaded.meta.get('dataset_meta') or inferencer.model.dataset_meta
    inferencer.model = loaded.model.eval()
    inferencer.model.dataset_meta = inferencer.visualizer.dataset_meta = dataset_meta
    return inferencer


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        images = list_images(args.images, args.num)
        inferencer = build_inferencer(args.config, args.checkpoint)
    except LOAD_ERRORS as error:
        print(f'error: {error}', file=sys.stderr)
        return 2
    result = inferencer(images, return_vis=True, no_save_vis=True,
                        pred_score_thr=args.score_thr)
    canvas = tile(result['visualization'])
    ok, encoded = cv2.imencode('.png', cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError('OpenCV could not encode the PNG')
    with atomic_write(args.out, overwrite=args.force) as tmp:
        with open(tmp, 'wb') as f:
            f.write(encoded.tobytes())
    counts = [sum(score >= args.score_thr for score in prediction['scores'])
              for prediction in result['predictions']]
    print(f'[show_predictions] {len(images)} images, predictions drawn (score >= '
          f'{args.score_thr}): {counts} -> {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
