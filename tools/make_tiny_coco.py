#!/usr/bin/env python
"""Generate a small detection + instance segmentation set in exact COCO layout.

    python tools/make_tiny_coco.py [--out data/tiny_coco] [--train 240] [--val 60] [--seed 0]
        [--categories coco|shapes]

Writes ``annotations/instances_{train,val}2017.json``, ``train2017/`` and ``val2017/`` with
JPEG images of filled shapes (discs, triangles, rectangles) of several sizes and colours on
textured backgrounds, each with a polygon mask. With ``--categories coco`` (default) the shapes
carry real COCO category ids and names ('sports ball', 'kite', 'book') and the files list all
80 COCO categories, so mmdet's COCO configs run on it unchanged but for ``data_root``. With
``--categories shapes`` the files list only three categories, ids 1-3 named 'disc',
'triangle', 'rectangle' (a set whose class names are not COCO's: configs set
``num_classes=3`` and ``metainfo=dict(classes=SHAPE_CLASSES)``); the images are the same.
Image sides vary and are not multiples of 32; a few images are grayscale. The output is
deterministic for a seed, written to a temporary folder and renamed into place; an existing
set is kept unless ``--force``.
"""
import argparse
import json
import math
import os
import os.path as osp
import sys

import cv2
import numpy as np

from mmrepghost.utils.synthetic import (parse_dataset_args, publish_directory, shape_polygon,
                                        textured_background)

# the shapes and the COCO category (id, name) each one is labelled with
SHAPES = {'disc': (37, 'sports ball'), 'triangle': (38, 'kite'), 'rectangle': (84, 'book')}
#: ``--categories shapes``: the class names, in the order of their ids 1, 2, 3
SHAPE_CLASSES = tuple(SHAPES)
CATEGORY_CHOICES = ('coco', 'shapes')
COCO_IDS = [
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27,
    28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53,
    54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80,
    81, 82, 84, 85, 86, 87, 88, 89, 90
]


def coco_categories() -> list:
    """The 80 COCO categories with their official ids, in mmdet's class order."""
    from mmdet.datasets import CocoDataset
    names = CocoDataset.METAINFO['classes']
    assert len(names) == len(COCO_IDS) == 80
    categories = [dict(id=i, name=n, supercategory='object') for i, n in zip(COCO_IDS, names)]
    for cat_id, name in SHAPES.values():
        assert any(c['id'] == cat_id and c['name'] == name for c in categories), name
    return categories


def shape_categories() -> list:
    """The three shape categories, ids 1-3 in :data:`SHAPE_CLASSES` order."""
    return [dict(id=i, name=n, supercategory='shape') for i, n in enumerate(SHAPE_CLASSES, 1)]


def category_ids(categories: str) -> dict:
    """{shape: category id} of ``categories`` ('coco' or 'shapes')."""
    if categories == 'coco':
        return {kind: cat_id for kind, (cat_id, _) in SHAPES.items()}
    if categories == 'shapes':
        return {kind: i for i, kind in enumerate(SHAPE_CLASSES, 1)}
    raise ValueError(f'categories={categories!r} is unknown; allowed: {CATEGORY_CHOICES}')


def polygon_area(points: np.ndarray) -> float:
    x, y = points[:, 0], points[:, 1]
    return float(0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def make_image(rng: np.random.Generator, image_id: int, file_name: str, ids: dict):
    """One image (H, W, 3 uint8) and its COCO annotations (ids filled in later).

    ``ids`` maps each shape to its category id (:func:`category_ids`).
    """
    height, width = int(rng.integers(200, 330)), int(rng.integers(200, 330))
    image = textured_background(rng, height, width)  # darker than the shapes' colours
    annotations, boxes = [], []
    for _ in range(int(rng.integers(1, 5))):
        for _attempt in range(20):  # place without overlapping earlier shapes
            kind = list(SHAPES)[int(rng.integers(len(SHAPES)))]
            r = float(rng.uniform(14, min(height, width) / 4))
            cx = float(rng.uniform(r + 2, width - r - 2))
            cy = float(rng.uniform(r + 2, height - r - 2))
            points = shape_polygon(kind, cx, cy, r, float(rng.uniform(0, 2 * math.pi)))
            x0, y0 = points.min(0)
            x1, y1 = points.max(0)
            if all(x1 < bx0 - 2 or x0 > bx1 + 2 or y1 < by0 - 2 or y0 > by1 + 2
                   for bx0, by0, bx1, by1 in boxes):
                break
        else:
            continue
        colour = rng.uniform(130, 255, size=3)
        cv2.fillPoly(image, [np.round(points).astype(np.int32)], colour.tolist(),
                     lineType=cv2.LINE_AA)
        boxes.append((x0, y0, x1, y1))
        annotations.append(dict(
            image_id=image_id, category_id=ids[kind], iscrowd=0,
            bbox=[round(float(x0), 2), round(float(y0), 2), round(float(x1 - x0), 2),
                  round(float(y1 - y0), 2)],
            area=round(polygon_area(points), 2),
            segmentation=[[round(float(v), 2) for v in points.reshape(-1)]]))
    image = np.clip(image, 0, 255).astype(np.uint8)
    if image_id % 10 == 7:  # a few grayscale images, as COCO has
        image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    info = dict(id=image_id, file_name=file_name, height=height, width=width)
    return image, info, annotations


def write_split(root: str, split: str, count: int, rng: np.random.Generator,
                first_id: int, categories: list, ids: dict) -> None:
    os.makedirs(osp.join(root, f'{split}2017'))
    images, annotations = [], []
    for image_id in range(first_id, first_id + count):
        file_name = f'{image_id:012d}.jpg'
        image, info, anns = make_image(rng, image_id, file_name, ids)
        if not cv2.imwrite(osp.join(root, f'{split}2017', file_name), image,
                           [cv2.IMWRITE_JPEG_QUALITY, 95]):
            raise OSError(f'could not write {file_name}')
        images.append(info)
        for k, ann in enumerate(anns):
            ann['id'] = image_id * 100 + k  # unique across splits (< 100 shapes an image)
            annotations.append(ann)
    data = dict(info=dict(description=f'mmrepghost tiny COCO ({split})', version='1.0'),
                licenses=[], images=images, annotations=annotations, categories=categories)
    with open(osp.join(root, 'annotations', f'instances_{split}2017.json'), 'w') as f:
        json.dump(data, f)


def parse_args(argv=None):
    # --categories is this generator's own; the shared options come from parse_dataset_args
    own = argparse.ArgumentParser(add_help=False)
    own.add_argument('--categories', default='coco', choices=CATEGORY_CHOICES)
    known, rest = own.parse_known_args(argv)
    description = (__doc__.split('\n\n')[0] + ' --categories {coco,shapes}: label the shapes '
                   "with COCO's 80 categories (default) or with 3 own ones (disc, triangle, "
                   'rectangle).')
    args = parse_dataset_args(description, rest, 'data/tiny_coco', 240, 60)
    args.categories = known.categories
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    out = osp.abspath(args.out)

    def build(root):
        os.makedirs(osp.join(root, 'annotations'))
        categories = coco_categories() if args.categories == 'coco' else shape_categories()
        ids = category_ids(args.categories)
        rng = np.random.default_rng(args.seed)
        write_split(root, 'train', args.train, rng, 1, categories, ids)
        write_split(root, 'val', args.val, rng, args.train + 1, categories, ids)

    if not publish_directory(out, build, args.force):
        print(f'{out} exists; keeping it (pass --force to regenerate)')
        return 0
    print(f'wrote {args.train} train + {args.val} val images to {out} ({args.categories} '
          'categories)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
