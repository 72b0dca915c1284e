"""Building blocks of the generated datasets (tools/make_tiny_coco.py, make_tiny_imagenet.py).

Shapes on textured backgrounds, drawn with OpenCV from a seeded numpy generator, and an
atomic publication of a whole dataset folder.
"""
import argparse
import math
import os
import os.path as osp
import shutil
import tempfile
from typing import Callable

import numpy as np


def textured_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(H, W, 3) float image: a dark colour, a horizontal gradient and Gaussian noise."""
    base = rng.uniform(20, 90, size=3)
    ramp = np.linspace(0, rng.uniform(10, 50), width)[None, :, None]
    return base[None, None, :] + ramp + rng.normal(0, 6, size=(height, width, 3))


def shape_polygon(kind: str, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    """Vertices (N, 2) of a 'disc', 'triangle' or 'rectangle' of radius ``r`` at (cx, cy)."""
    if kind == 'disc':
        angles = np.linspace(0, 2 * math.pi, 24, endpoint=False)
        return np.stack([cx + r * np.cos(angles), cy + r * np.sin(angles)], 1)
    if kind == 'triangle':
        angles = angle + np.array([0, 2 * math.pi / 3, 4 * math.pi / 3])
        return np.stack([cx + r * np.cos(angles), cy + r * np.sin(angles)], 1)
    if kind == 'rectangle':
        half_w, half_h = r, r * 0.6  # a landscape rectangle, axis aligned
        return np.array([[cx - half_w, cy - half_h], [cx + half_w, cy - half_h],
                         [cx + half_w, cy + half_h], [cx - half_w, cy + half_h]])
    raise ValueError(f'unknown shape {kind!r}; allowed: disc, triangle, rectangle')


def publish_directory(out: str, build: Callable[[str], None], force: bool = False) -> bool:
    """Run ``build(tmp_dir)`` and rename the result to ``out``; False if ``out`` is kept.

    An existing ``out`` is kept unless ``force``; it is then swapped out by renames, so a
    half-written dataset never sits at ``out``, and an interrupted build leaves nothing.
    """
    out = osp.abspath(out)
    if osp.exists(out) and not force:
        return False
    parent = osp.dirname(out)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f'.{osp.basename(out)}.', dir=parent)
    try:
        build(tmp)
        old = None
        if osp.exists(out):
            old = tempfile.mkdtemp(prefix=f'.{osp.basename(out)}.old.', dir=parent)
            os.replace(out, osp.join(old, 'set'))
        os.replace(tmp, out)
        if old:
            shutil.rmtree(old)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return True


def parse_dataset_args(description: str, argv, out: str, train: int, val: int,
                       unit: str = 'images', most: int = 100000) -> argparse.Namespace:
    """The generators' shared command line: --out --train --val --seed --force, validated."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('--out', default=out, help='output folder')
    parser.add_argument('--train', type=int, default=train, help=f'training {unit}')
    parser.add_argument('--val', type=int, default=val, help=f'validation {unit}')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--force', action='store_true', help='replace an existing set')
    args = parser.parse_args(argv)
    for name in ('train', 'val'):
        if not 1 <= getattr(args, name) <= most:
            parser.error(f'--{name} {getattr(args, name)} is out of range: use 1..{most}')
    return args
