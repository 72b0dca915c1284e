#!/usr/bin/env python
"""Fuse a trained RepGhostNet classifier or detector into its deploy structure.

    python tools/reparameterize.py CONFIG CHECKPOINT OUT.pth [--force]

Loads CHECKPOINT into the model of CONFIG, re-parameterizes every fusable module, checks the
outputs before/after on a random batch (prints the max abs diff), and writes OUT.pth (the
deploy weights, with the checkpoint's meta) and OUT.py (CONFIG with
``model.backbone.deploy=True``), both atomically (:func:`mmrepghost.deploy.save_deployed`).
The class names (``meta['dataset_meta']``, read by mmdet's and mmpretrain's inferencers) are
the checkpoint's; a checkpoint without them gets those of CONFIG's dataset, with a warning.
``mim test`` with OUT.py and OUT.pth gives the metrics of CONFIG and CHECKPOINT. CHECKPOINT
and CONFIG are never overwritten; existing outputs are replaced only with ``--force``; an
already deployed checkpoint is reported and nothing is written.
"""
import argparse
import os.path as osp
import sys
import warnings

from mmrepghost.deploy import (LOAD_ERRORS, DatasetMetaWarning, load_trained_model,
                               reparameterize_model, save_deployed)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config', help='the training config (mmdet or mmpretrain)')
    parser.add_argument('checkpoint', help='a checkpoint of that config (train structure)')
    parser.add_argument('out', help='output deploy checkpoint (.pth); OUT.py is written too')
    parser.add_argument('--force', action='store_true', help='replace existing outputs')
    parser.add_argument('--input-size', nargs=2, type=int, default=[224, 224],
                        metavar=('H', 'W'), help='random input of the equivalence check')
    args = parser.parse_args(argv)
    if not args.out.endswith('.pth'):
        parser.error(f'OUT must end with .pth, got {args.out!r}')
    if min(args.input_size) < 32:
        parser.error(f'--input-size {args.input_size} is too small: H and W must be >= 32')
    for path in (args.out, osp.splitext(args.out)[0] + '.py'):
        for name in ('checkpoint', 'config'):
            source = getattr(args, name)
            if osp.abspath(path) == osp.abspath(source) or (
                    osp.exists(path) and osp.exists(source) and osp.samefile(path, source)):
                parser.error(f'output {path!r} would overwrite {name.upper()}; choose another '
                             'OUT')
        if osp.exists(path) and not args.force:
            parser.error(f'{path} exists; pass --force to replace it')
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    out_config = osp.splitext(args.out)[0] + '.py'
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always', DatasetMetaWarning)
            loaded = load_trained_model(args.config, args.checkpoint)
    except LOAD_ERRORS as error:
        print(f'error: {error}', file=sys.stderr)
        return 2
    for warning in caught:  # printed, not filtered away by an earlier identical warning
        if issubclass(warning.category, DatasetMetaWarning):
            print(f'warning: {warning.message}', file=sys.stderr)
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename,
                                   warning.lineno)
    if loaded.is_deploy:
        print(f'{args.checkpoint} is already a deploy checkpoint (re-parameterized); nothing to '
              'do, nothing written.')
        return 0
    if not loaded.meta.get('dataset_meta'):
        print(f'error: {args.checkpoint} has no class names (meta["dataset_meta"]) and the '
              f'dataset of {args.config} names none; pass the training config (with its '
              'dataloaders)', file=sys.stderr)
        return 2
    fused = reparameterize_model(loaded.model, verify=True, input_size=tuple(args.input_size))
    if not fused:
        print(f'error: the model of {args.config} has no re-parameterizable module (e.g. a '
              'RepGhostNet backbone); nothing to deploy, nothing written.', file=sys.stderr)
        return 2
    meta = dict(loaded.meta, source_checkpoint=osp.abspath(args.checkpoint))
    save_deployed(loaded.model, loaded.cfg, args.out, meta, overwrite=args.force)
    height, width = args.input_size
    print(f'deployed {args.checkpoint} -> {args.out} + {out_config}: max abs diff '
          f'{fused.max_abs_diff:.3g} (eval mode, random {height}x{width} batch)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
