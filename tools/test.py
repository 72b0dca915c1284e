#!/usr/bin/env python
"""Test a checkpoint of an mmdet or mmpretrain config: the ``mim test mmrepghost`` entry.

    mim test mmrepghost CONFIG --checkpoint CKPT [--work-dir DIR] [--cfg-options ...]
    python tools/test.py CONFIG CKPT ...

CONFIG is a config file (which may inherit ``_base_ = 'mmrepghost::<config>'``) or a shipped
config named ``mmrepghost::<config>``. Configs with ``RepGhostDeployHook`` test the deployed
network; a ``*_deploy.pth`` goes with its ``*_deploy.py``.
"""
import os
import sys

from mmrepghost.engine.launch import (build_runner, config_for_run, parse_run_arguments,
                                      run_argument_parser)


def parse_args(argv=None):
    parser = run_argument_parser(__doc__.split('\n\n')[0])
    parser.add_argument('checkpoint', help='checkpoint of that config')
    return parse_run_arguments(parser, argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if '://' not in args.checkpoint and not os.path.isfile(args.checkpoint):
        print(f'error: checkpoint {args.checkpoint!r} does not exist', file=sys.stderr)
        return 2
    try:
        cfg = config_for_run(args.config, args.work_dir, args.cfg_options, args.launcher)
    except FileNotFoundError as error:
        print(f'error: {error}', file=sys.stderr)
        return 2
    cfg.load_from = args.checkpoint
    build_runner(cfg).test()
    return 0


if __name__ == '__main__':
    sys.exit(main())
