"""What ``tools/train.py`` and ``tools/test.py`` (the ``mim train/test mmrepghost`` entry) share:
a config with the command line's settings, and the runner it names."""
import argparse
import os
import os.path as osp
from typing import List, Optional

from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from ..configs import load_config


def run_argument_parser(description: str) -> argparse.ArgumentParser:
    """The arguments mmdet's and mmpretrain's train and test tools share: CONFIG,
    ``--work-dir``, ``--cfg-options``, ``--launcher`` and the launcher's ``--local-rank``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('config', help='config file, or mmrepghost::<shipped config>')
    parser.add_argument('--work-dir', help='where logs, metrics and checkpoints go')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='key=value pairs merged into the config')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    return parser


def parse_run_arguments(parser: argparse.ArgumentParser,
                        argv: Optional[List[str]] = None) -> argparse.Namespace:
    """``parser.parse_args(argv)``; the process's ``LOCAL_RANK`` from ``--local-rank`` unless
    the launcher set it (as mmdet's tools do)."""
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def config_for_run(config: str, work_dir: Optional[str] = None,
                   cfg_options: Optional[dict] = None, launcher: str = 'none') -> Config:
    """The config at path ``config`` (or ``mmrepghost::<name>``) as mmdet's and mmpretrain's
    tools prepare it: ``--cfg-options`` merged, the launcher set, and the work directory from
    the command line, else the config, else ``work_dirs/<config name>``."""
    cfg = load_config(config)
    cfg.launcher = launcher
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(config))[0])
    return cfg


def build_runner(cfg: Config) -> Runner:
    """The config's ``runner_type`` (e.g. ``RepGhostRunner``), else mmengine's ``Runner``."""
    return RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
