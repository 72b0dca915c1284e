"""mmrepghost: RepGhostNet for OpenMMLab (mmpretrain + mmdet).

A config needs only ``custom_imports=dict(imports=['mmrepghost'])``. The process-wide effects
of importing the package (registration, the safe-unpickling allowlist, ``mmrepghost::``
config bases) are listed, each with its reason, in ``mmrepghost/registry.py``.
"""
from . import deploy, engine, models  # noqa: F401  (registers into mmdet + mmpretrain)
from .configs import enable_package_bases
from .utils import register_safe_globals
from .version import __version__

register_safe_globals()  # listed in mmrepghost/registry.py
enable_package_bases()  # listed in mmrepghost/registry.py

__all__ = ['__version__', 'enable_package_bases', 'register_safe_globals']
