"""mmrepghost: RepGhostNet for OpenMMLab (mmpretrain + mmdet).

A config needs only ``custom_imports=dict(imports=['mmrepghost'])``. Importing the package has
exactly these process-wide effects, each on purpose:

* registration: every module, hook, runner and optimizer wrapper enters mmdet's and
  mmpretrain's registries (``mmrepghost/registry.py``), so ``type='RepGhostNet'`` builds in
  either codebase;
* :func:`~mmrepghost.utils.register_safe_globals`: torch's ``weights_only`` unpickler accepts
  the exact types OpenMMLab checkpoints hold (``mmrepghost/utils/checkpoint.py``), so mmengine's
  loaders work on torch >= 2.6 without ``weights_only=False``;
* :func:`~mmrepghost.configs.enable_package_bases`: ``_base_ = 'mmrepghost::<config>'`` resolves
  to the shipped configs (``mmrepghost/configs.py``; only names with that prefix);
* :func:`~mmrepghost.models.install_neck_check`: a torch module-registration hook that checks a
  detector's neck ``in_channels`` against the backbone when the neck is assigned
  (``mmrepghost/models/neck_check.py``).
"""
from . import deploy, engine, models  # noqa: F401  (registers into mmdet + mmpretrain)
from .configs import enable_package_bases
from .utils import register_safe_globals
from .version import __version__

register_safe_globals()
enable_package_bases()

__all__ = ['__version__', 'enable_package_bases', 'register_safe_globals']
