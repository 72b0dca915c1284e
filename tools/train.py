#!/usr/bin/env python
"""Train an mmdet or mmpretrain config: the ``mim train mmrepghost CONFIG`` entry.

    mim train mmrepghost CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp] [--cfg-options ...]
    python tools/train.py CONFIG ...

CONFIG is a config file (which may inherit ``_base_ = 'mmrepghost::<config>'``) or a shipped
config named ``mmrepghost::<config>``. Flags as in mmdet's and mmpretrain's ``tools/train.py``.
"""
import sys

from mmrepghost.engine.launch import (build_runner, config_for_run, parse_run_arguments,
                                      run_argument_parser)


def parse_args(argv=None):
    parser = run_argument_parser(__doc__.split('\n\n')[0])
    parser.add_argument('--resume', nargs='?', const='auto',
                        help='resume from CKPT, or from the latest checkpoint in the work dir')
    parser.add_argument('--amp', action='store_true', help='mixed precision (bf16 on CPU)')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help="scale the learning rate by the config's auto_scale_lr")
    return parse_run_arguments(parser, argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        cfg = config_for_run(args.config, args.work_dir, args.cfg_options, args.launcher)
    except FileNotFoundError as error:
        print(f'error: {error}', file=sys.stderr)
        return 2
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.auto_scale_lr:
        if 'base_batch_size' not in cfg.get('auto_scale_lr', {}):
            print('error: --auto-scale-lr needs auto_scale_lr.base_batch_size in the config',
                  file=sys.stderr)
            return 2
        cfg.auto_scale_lr.enable = True
    if args.resume is not None:
        cfg.resume = True
        cfg.load_from = None if args.resume == 'auto' else args.resume
    build_runner(cfg).train()
    return 0


if __name__ == '__main__':
    sys.exit(main())
