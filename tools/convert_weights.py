#!/usr/bin/env python
"""Convert official RepGhost or timm ``repghostnet_*`` weights to mmrepghost checkpoints.

    python tools/convert_weights.py SRC DST --from official [--layout classifier|backbone]

``classifier`` (default) loads into the ImageClassifier of ``configs/cls`` and, through
``init_cfg=dict(type='Pretrained', checkpoint=DST, prefix='backbone.')``, into detectors;
``backbone`` writes the backbone keys alone (``init_cfg`` without ``prefix``). SRC is never
modified; DST is written atomically and only replaced with ``--force``. Both layouts carry
the 1000 ImageNet class names as ``meta['dataset_meta']`` (what mmpretrain's ``get_model`` and
inferencers read).
"""
import argparse
import os.path as osp
import sys

from mmrepghost.models.convert import (LAYOUTS, SOURCE_SAFE_GLOBALS, SOURCES, WEIGHT_CHOICES,
                                       ConversionError, convert_checkpoint)
from mmrepghost.utils import CheckpointError, load_checkpoint_file, save_checkpoint_atomic


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='official or timm checkpoint (.pth/.pth.tar/.bin)')
    parser.add_argument('dst', help='output mmrepghost checkpoint')
    parser.add_argument('--from', dest='source', required=True, choices=SOURCES,
                        help='layout of SRC')
    parser.add_argument('--layout', default='classifier', choices=LAYOUTS,
                        help='layout of DST (default: classifier)')
    parser.add_argument('--arch', default='auto',
                        help="width ('0.5x' ... '2.0x'); default: detected from the shapes")
    parser.add_argument('--weights', default='auto', choices=WEIGHT_CHOICES,
                        help='auto: EMA weights when SRC has them (default)')
    parser.add_argument('--force', action='store_true', help='replace an existing DST')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if osp.exists(args.dst) and osp.exists(args.src) and osp.samefile(args.src, args.dst):
        print(f'error: DST {args.dst!r} is SRC; choose another output path', file=sys.stderr)
        return 2
    try:
        checkpoint = load_checkpoint_file(args.src, extra_safe_globals=SOURCE_SAFE_GLOBALS)
        state_dict, meta = convert_checkpoint(checkpoint, args.source, args.layout,
                                              args.arch, args.weights)
        save_checkpoint_atomic(dict(state_dict=state_dict, meta=meta), args.dst,
                               overwrite=args.force)
    except (FileNotFoundError, FileExistsError, CheckpointError, ConversionError,
            ValueError) as error:
        print(f'error: {error}', file=sys.stderr)
        return 2
    classes = meta.get('dataset_meta', {}).get('classes')
    names = (f'{len(classes)} ImageNet class names' if classes else
             f'no class names ({meta["num_classes"]} classes, not ImageNet-1k)')
    print(f'converted {args.src} ({meta["source"]}, {meta["weights"]}) -> {args.dst}: '
          f'RepGhostNet {meta["arch"]}, {meta["layout"]} layout, {len(state_dict)} tensors, '
          f'{names}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
