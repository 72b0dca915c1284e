"""Register mmrepghost classes in both mmdet's and mmpretrain's registries.

mmdet's and mmpretrain's ``MODELS``/``HOOKS`` are siblings under mmengine's root registry: a
class registered in one is invisible from the other. Every public class of mmrepghost is
registered in both, so ``type='RepGhostNet'`` (or ``type='RepGhostDeployHook'``) works in an
mmdet config and in an mmpretrain config alike.
"""
from typing import Callable, Type

from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import RUNNERS as MMENGINE_RUNNERS
from mmdet.registry import HOOKS as MMDET_HOOKS
from mmdet.registry import MODELS as MMDET_MODELS
from mmpretrain.registry import HOOKS as MMPRETRAIN_HOOKS
from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS


def _register_in(*registries) -> Callable[[Type], Type]:
    def decorator(cls: Type) -> Type:
        for registry in registries:
            registry.register_module(module=cls)
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
