"""mmrepghost: RepGhostNet for OpenMMLab (mmpretrain + mmdet).

Importing the package registers every module (backbone, hook) in the mmdet and mmpretrain
registries and allowlists the types that OpenMMLab checkpoints pickle, so a config needs only
``custom_imports=dict(imports=['mmrepghost'])``.
"""
from . import deploy, engine, models  # noqa: F401  (registers into mmdet + mmpretrain)
from .utils import register_safe_globals
from .version import __version__

register_safe_globals()

__all__ = ['__version__', 'register_safe_globals']
