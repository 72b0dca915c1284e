#!/usr/bin/env python
"""Params and FLOPs as the paper counts them (FLOPs: conv + FC multiply-adds, no BN).

    python tools/get_flops.py                     # all eight widths, train and deploy
    python tools/get_flops.py --arch 1.0x 1.3x --shape 224 224
    python tools/get_flops.py --config configs/retinanet/repghost_1_3x.py --shape 800 1333

A detector is counted as mmdet's ``tensor`` mode runs it on one padded image: backbone, neck
and heads (for two-stage detectors the RoI heads on the RPN's proposals of that image).
"""
import argparse
import copy
import sys

import torch
from mmengine.config import Config

from mmrepghost.deploy import build_model, reparameterize_model
from mmrepghost.models import ARCH_WIDTHS, repghostnet_classifier_cfg
from mmrepghost.utils.complexity import count_params_macs


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--arch', nargs='+', default=['all'],
                        help=f"widths to count ('all' or any of {', '.join(ARCH_WIDTHS)})")
    parser.add_argument('--config', help='count this config\'s model instead of the widths')
    parser.add_argument('--shape', nargs=2, type=int, default=[224, 224], metavar=('H', 'W'))
    parser.add_argument('--verify', action='store_true',
                        help='check deploy == train outputs on random inputs (eval mode)')
    args = parser.parse_args(argv)
    if args.arch == ['all']:
        args.arch = list(ARCH_WIDTHS)
    unknown = [a for a in args.arch if a not in ARCH_WIDTHS]
    if unknown:
        parser.error(f'unknown --arch {unknown}; allowed: all, {", ".join(ARCH_WIDTHS)}')
    if min(args.shape) < 32:
        parser.error(f'--shape {args.shape} is too small: H and W must be >= 32')
    return args


def build_models(args):
    """(name, model) pairs to count."""
    if args.config:
        yield args.config, build_model(Config.fromfile(args.config))
        return
    for arch in args.arch:
        model_cfg = repghostnet_classifier_cfg(arch)
        yield f'RepGhostNet {arch}', build_model(Config(dict(model=model_cfg)))


def forward_of(model, shape):
    """How to run ``model`` on one image: plain call, or mmdet's tensor mode with metainfo."""
    if not hasattr(model, 'extract_feat'):
        return model
    from mmdet.structures import DetDataSample
    shape = tuple(shape)
    sample = DetDataSample(metainfo=dict(
        img_shape=shape, ori_shape=shape, pad_shape=shape, batch_input_shape=shape,
        scale_factor=(1.0, 1.0)))
    return lambda inputs: model(inputs, [sample], mode='tensor')


def count(model, shape):
    """``(params, macs)`` of ``model`` on one ``1x3xHxW`` input."""
    return count_params_macs(model, torch.randn(1, 3, *shape), forward_of(model, shape))


def main(argv=None) -> int:
    args = parse_args(argv)
    rows = []
    for name, model in build_models(args):
        deployed = copy.deepcopy(model)
        fused = reparameterize_model(deployed, verify=args.verify, logger='silent')
        diff = fused.max_abs_diff
        for structure, net in (('train', model), ('deploy', deployed)):
            params, macs = count(net, args.shape)
            check = f'{diff:.1e}' if args.verify and structure == 'deploy' else '-'
            rows.append((name, structure, params / 1e6, macs / 1e6, check))
    print(f'Input 1x3x{args.shape[0]}x{args.shape[1]}. Params: all learnable parameters '
          '(BN included, as Table 3); FLOPs: multiply-adds of conv + FC layers (no BN).\n')
    print('| model | structure | params (M) | FLOPs (M) | deploy vs train max abs diff |')
    print('|---|---|---:|---:|---:|')
    for name, structure, params, macs, check in rows:
        print(f'| {name} | {structure} | {params:.3f} | {macs:.1f} | {check} |')
    return 0


if __name__ == '__main__':
    sys.exit(main())
