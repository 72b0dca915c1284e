"""Register mmrepghost classes in both mmdet's and mmpretrain's registries.

mmdet's and mmpretrain's ``MODELS``/``HOOKS`` are siblings under mmengine's root registry: a
class registered in one is invisible from the other. Every public class of mmrepghost is
registered in both, so ``type='RepGhostNet'`` (or ``type='RepGhostDeployHook'``) works in an
mmdet config and in an mmpretrain config alike.

Import-time effects: ``import mmrepghost`` (what ``custom_imports=dict(imports=
['mmrepghost'])`` does) changes exactly these process-wide states, each on purpose:

* registration (the decorators below, run as ``mmrepghost.models`` and ``mmrepghost.engine``
  are imported): every model component, hook, runner and optimizer wrapper enters mmdet's and
  mmpretrain's registries, so configs of either codebase build them by ``type``;
* former names (:data:`FORMER_NAMES`, registered with their class): ``CPUCompatibleRunner``
  is ``RepGhostRunner``, so configs written before the rename keep working;
* :func:`mmrepghost.utils.register_safe_globals` (called by ``mmrepghost/__init__.py``):
  torch's ``weights_only`` unpickler accepts the exact types OpenMMLab checkpoints hold
  (``mmrepghost/utils/checkpoint.py``), so mmengine's loaders work on torch >= 2.6 without
  ``weights_only=False``;
* :func:`mmrepghost.configs.enable_package_bases` (called by ``mmrepghost/__init__.py``):
  ``_base_ = 'mmrepghost::<config>'`` resolves to the shipped configs (only names with that
  prefix), so ``mim train mmrepghost`` runs them from any directory.

Checks run at explicit points, not at import: e.g. the neck/backbone channel check runs in
``RepGhostRunner.build_model`` and ``mmrepghost.deploy.build_model``.
"""
from typing import Callable, Dict, Type

from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import RUNNERS as MMENGINE_RUNNERS
from mmdet.registry import HOOKS as MMDET_HOOKS
from mmdet.registry import MODELS as MMDET_MODELS
from mmpretrain.registry import HOOKS as MMPRETRAIN_HOOKS
from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS


#: Names a class is also registered under, ``{former name: class name}``: configs written
#: before a rename keep building it.
FORMER_NAMES: Dict[str, str] = {'CPUCompatibleRunner': 'RepGhostRunner'}


def _register_in(*registries) -> Callable[[Type], Type]:
    def decorator(cls: Type) -> Type:
        names = [cls.__name__] + [former for former, name in FORMER_NAMES.items()
                                  if name == cls.__name__]
        for registry in registries:
            for name in names:
                registry.register_module(name=name, module=cls)
        return cls

    return decorator


#: Class decorator: register a model component in mmdet's and mmpretrain's ``MODELS``.
register_model = _register_in(MMDET_MODELS, MMPRETRAIN_MODELS)
#: Class decorator: register a hook in mmdet's and mmpretrain's ``HOOKS``.
register_hook = _register_in(MMDET_HOOKS, MMPRETRAIN_HOOKS)
#: Class decorator: register a runner in mmengine's root ``RUNNERS``, which mmdet's and
#: mmpretrain's ``RUNNERS`` inherit from: their ``tools/train.py`` build the runner from the
#: root registry before any default scope exists, their ``tools/test.py`` from their own.
register_runner = _register_in(MMENGINE_RUNNERS)
#: Class decorator: register an optimizer wrapper in mmengine's root ``OPTIM_WRAPPERS`` (mmdet's
#: and mmpretrain's inherit from it).
register_optim_wrapper = _register_in(MMENGINE_OPTIM_WRAPPERS)
