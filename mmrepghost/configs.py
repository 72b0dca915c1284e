"""mmrepghost's shipped configs, and ``_base_ = 'mmrepghost::<config>'`` in anyone's config.

Where they live: a wheel or sdist install carries them in ``mmrepghost/.mim/configs/`` (as
mmdet and mmpretrain do; ``setup.py`` copies them there); an editable install or a source
checkout reads the repository's ``configs/`` directly.

mmengine 0.10.7 resolves ``pkg::path`` bases only for the packages in its fixed table
(``mmengine.config.utils.MODULE2PACKAGE``), finds them through ``pkg_resources`` (the wrong
directory for an editable install) and stamps ``_scope_ = 'pkg'`` on every typed top-level
dict of such a base, which for ``mmrepghost`` no registry answers to. So
:func:`enable_package_bases` makes the one change needed, limited to names starting with
``mmrepghost::``: mmengine's ``Config._get_cfg_path`` returns the shipped file for those names
and no scope, exactly as for a base file next to the config. A shipped config is an mmdet or
mmpretrain config (its own ``mmdet::``/``mmpretrain::`` bases keep their scopes, and it sets
``default_scope``), so the registries it was written for build it. Every other base
(``mmdet::``, ``mmpretrain::``, relative paths) goes to mmengine unchanged.

Why not another route: python-style configs (``with read_base(): from ... import *``) need no
patch, but they cannot be mixed with the text-style ``_base_`` configs of mmdet 3.3 and
mmpretrain 1.2 that ours and most users' inherit, and ``mim train mmdet
configs/retinanet/repghost_1_3x.py`` must keep working; adding ``mmrepghost`` to
``MODULE2PACKAGE`` alone still leaves the wrong editable path and the unanswered scope.

``import mmrepghost`` calls :func:`enable_package_bases` (listed in ``mmrepghost/registry.py``);
``tools/train.py`` and ``tools/test.py`` (the ``mim train/test mmrepghost`` entry) load every
config after it. mmdet's and mmpretrain's own tools read the config before they import
``custom_imports``, so a config with ``mmrepghost::`` bases is run through
``mim train mmrepghost`` / ``mim test mmrepghost``.
"""
import difflib
import os
import os.path as osp
from typing import List, Optional, Tuple

from mmengine.config import Config

#: the prefix of a shipped config in ``_base_`` (and on the tools' command line)
PREFIX = 'mmrepghost::'
_PACKAGE_DIR = osp.dirname(osp.abspath(__file__))


def configs_root() -> str:
    """The directory holding the shipped configs (installed package or source checkout)."""
    installed = osp.join(_PACKAGE_DIR, '.mim', 'configs')
    if osp.isdir(installed):
        return installed
    checkout = osp.dirname(_PACKAGE_DIR)
    if osp.isdir(osp.join(checkout, 'configs')) and osp.isfile(
            osp.join(checkout, 'model-index.yml')):
        return osp.join(checkout, 'configs')
    raise FileNotFoundError(
        f'mmrepghost at {_PACKAGE_DIR} has no shipped configs: neither {installed} (a wheel or '
        f'sdist install) nor {checkout}/configs (a source checkout) exists; reinstall mmrepghost')


def list_configs() -> List[str]:
    """Names of the shipped configs, relative to :func:`configs_root` (``_base_`` excluded)."""
    root = configs_root()
    names = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != '_base_' and not d.startswith(('.', '__')))
        names += [osp.relpath(osp.join(folder, f), root) for f in sorted(files)
                  if f.endswith('.py')]
    return names


def shipped_config(name: str) -> str:
    """Absolute path of the shipped config ``name`` (``retinanet/repghost_1_3x.py``, with or
    without the ``mmrepghost::`` prefix).

    Raises:
        FileNotFoundError: no such config; the message names the configs directory and the
            closest shipped names.
    """
    relative = name[len(PREFIX):] if name.startswith(PREFIX) else name
    root = configs_root()
    path = osp.normpath(osp.join(root, relative))
    if relative and not osp.isabs(relative) and path.startswith(root + os.sep) and \
            osp.isfile(path):
        return path
    close = difflib.get_close_matches(relative, list_configs(), n=3, cutoff=0.5)
    hint = f'; closest: {", ".join(close)}' if close else ''
    raise FileNotFoundError(
        f'{PREFIX}{relative} is not a shipped mmrepghost config: shipped configs live in '
        f'{root} (e.g. {PREFIX}retinanet/repghost_1_3x.py){hint}')


def _get_cfg_path(original):
    def get_cfg_path(cfg_path: str, filename: str) -> Tuple[str, Optional[str]]:
        if cfg_path.startswith(PREFIX):
            return shipped_config(cfg_path), None  # no scope: a base file like a local one
        return original(cfg_path, filename)

    get_cfg_path.mmrepghost_original = original
    return get_cfg_path


def enable_package_bases() -> None:
    """Let mmengine configs inherit shipped configs: ``_base_ = 'mmrepghost::<config>'``.

    Idempotent; affects only base names that start with ``mmrepghost::``.
    """
    current = Config.__dict__.get('_get_cfg_path')
    if not isinstance(current, staticmethod):
        raise RuntimeError(
            'mmengine.config.Config._get_cfg_path is not the staticmethod of mmengine 0.10 '
            f'(found {current!r}); this mmengine cannot take mmrepghost:: bases')
    if hasattr(current.__func__, 'mmrepghost_original'):
        return
    Config._get_cfg_path = staticmethod(_get_cfg_path(current.__func__))


def load_config(config: str) -> Config:
    """``Config.fromfile`` of a config file, or of a shipped config given as
    ``mmrepghost::<name>``, with ``mmrepghost::`` bases enabled."""
    enable_package_bases()
    if config.startswith(PREFIX):
        config = shipped_config(config)
    elif not osp.isfile(config):
        raise FileNotFoundError(
            f'config {config!r} does not exist (a shipped config is named '
            f'{PREFIX}<name>, e.g. {PREFIX}retinanet/repghost_1_3x.py; they live in '
            f'{configs_root()})')
    return Config.fromfile(config)
