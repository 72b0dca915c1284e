"""What ``tools/train.py`` and ``tools/test.py`` (the ``mim train/test mmrepghost`` entry) share:
a config with the command line's settings, and the runner it names."""
import os.path as osp
from typing import Optional

from mmengine.config import Config
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from ..configs import load_config


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
