"""Build step of mmrepghost's packaging (metadata: ``pyproject.toml``).

OpenMMLab packages carry their configs, tools and model index under ``<package>/.mim/``: that
is where ``mim train/test PACKAGE`` finds ``tools/train.py``/``test.py`` and configs, and where
``_base_ = 'mmrepghost::...'`` finds shipped configs (:mod:`mmrepghost.configs`). A wheel or
sdist build copies them there from the repository root; the source tree is left untouched.
An editable install needs no copy: :mod:`mmrepghost.configs` reads the repository's own files.
"""
import os.path as osp
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = osp.dirname(osp.abspath(__file__))
#: what ``<package>/.mim/`` holds, relative to the repository root
MIM_FILES = ('configs', 'tools', 'model-index.yml')


class BuildPyWithMim(build_py):
    """``build_py`` that also copies :data:`MIM_FILES` into ``mmrepghost/.mim/`` of the build."""

    def run(self):
        super().run()
        if getattr(self, 'editable_mode', False):
            return
        target = osp.join(self.build_lib, 'mmrepghost', '.mim')
        ignore = shutil.ignore_patterns('__pycache__', '*.pyc')
        for name in MIM_FILES:
            source, dest = osp.join(HERE, name), osp.join(target, name)
            if osp.isdir(source):
                shutil.copytree(source, dest, ignore=ignore, dirs_exist_ok=True)
            else:
                self.mkpath(target)
                shutil.copyfile(source, dest)


setup(cmdclass={'build_py': BuildPyWithMim})
