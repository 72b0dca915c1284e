#!/usr/bin/env python
"""Generate a small classification set in mmpretrain's ImageNet layout.

    python tools/make_tiny_imagenet.py [--out data/tiny_imagenet] [--train 80] [--val 25]

Eight classes, each a shape (disc, triangle, rectangle, ring) in a colour family (warm or
cool): the class is learnable from shape and hue, while size, position, rotation, exact colour
and the textured background vary. Layout, as mmpretrain's ``ImageNet(split=...)`` reads it::

    train/<class>/<class>_<k>.JPEG   val/val_<k>.JPEG
    meta/train.txt ("<class>/<file> <label>")   meta/val.txt ("<file> <label>")
    meta/classes.txt (one class name a line, in label order)

``--train``/``--val`` are images per class. Deterministic for a seed; written to a temporary
folder and renamed into place; an existing set is kept unless ``--force``.
"""
import math
import os
import os.path as osp
import sys

import cv2
import numpy as np

from mmrepghost.utils.synthetic import (parse_dataset_args, publish_directory, shape_polygon,
                                        textured_background)

SHAPES = ('disc', 'triangle', 'rectangle', 'ring')
HUES = {'warm': (0, 30), 'cool': (95, 130)}  # OpenCV hue ranges (0-180): red-orange, blue
#: the class names in label order
CLASSES = tuple(f'{hue}_{shape}' for shape in SHAPES for hue in HUES)
IMAGE_SIZE = 72


def draw(rng: np.random.Generator, label: int) -> np.ndarray:
    """One ``IMAGE_SIZE`` square BGR image of class ``CLASSES[label]``."""
    hue_name, shape = CLASSES[label].split('_')
    image = textured_background(rng, IMAGE_SIZE, IMAGE_SIZE)
    r = float(rng.uniform(12, 24))
    cx, cy = (float(rng.uniform(r + 2, IMAGE_SIZE - r - 2)) for _ in range(2))
    low, high = HUES[hue_name]
    hsv = np.uint8([[[rng.uniform(low, high), rng.uniform(150, 255), rng.uniform(170, 255)]]])
    colour = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].tolist()
    angle = float(rng.uniform(0, 2 * math.pi))
    outline = shape_polygon('disc' if shape == 'ring' else shape, cx, cy, r, angle)
    cv2.fillPoly(image, [np.round(outline).astype(np.int32)], colour, lineType=cv2.LINE_AA)
    if shape == 'ring':  # punch the background back into the middle of a disc
        hole = shape_polygon('disc', cx, cy, r * 0.55, angle)
        background = textured_background(rng, IMAGE_SIZE, IMAGE_SIZE)
        mask = np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.uint8)
        cv2.fillPoly(mask, [np.round(hole).astype(np.int32)], 1, lineType=cv2.LINE_AA)
        image[mask > 0] = background[mask > 0]
    return np.clip(image, 0, 255).astype(np.uint8)


def write(path: str, image: np.ndarray) -> None:
    if not cv2.imwrite(path, image, [cv2.IMWRITE_JPEG_QUALITY, 95]):
        raise OSError(f'could not write {path}')


def build(root: str, per_class_train: int, per_class_val: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    os.makedirs(osp.join(root, 'meta'))
    os.makedirs(osp.join(root, 'val'))
    train_lines, val_lines = [], []
    for label, name in enumerate(CLASSES):
        os.makedirs(osp.join(root, 'train', name))
        for k in range(per_class_train):
            file_name = f'{name}/{name}_{k:04d}.JPEG'
            write(osp.join(root, 'train', file_name), draw(rng, label))
            train_lines.append(f'{file_name} {label}')
    order = rng.permutation(len(CLASSES) * per_class_val)  # val files do not reveal labels
    for k, index in enumerate(order):
        label = int(index) // per_class_val
        file_name = f'val_{k:05d}.JPEG'
        write(osp.join(root, 'val', file_name), draw(rng, label))
        val_lines.append(f'{file_name} {label}')
    for file_name, lines in (('train.txt', train_lines), ('val.txt', val_lines),
                             ('classes.txt', list(CLASSES))):
        with open(osp.join(root, 'meta', file_name), 'w') as f:
            f.write('\n'.join(lines) + '\n')


def parse_args(argv=None):
    return parse_dataset_args(__doc__.split('\n\n')[0], argv, 'data/tiny_imagenet', 80, 25,
                              unit='images per class', most=10000)


def main(argv=None) -> int:
    args = parse_args(argv)
    out = osp.abspath(args.out)
    if not publish_directory(out, lambda root: build(root, args.train, args.val, args.seed),
                             args.force):
        print(f'{out} exists; keeping it (pass --force to regenerate)')
        return 0
    print(f'wrote {len(CLASSES)} classes x ({args.train} train + {args.val} val) images '
          f'to {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
