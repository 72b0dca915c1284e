from .backbones import *  # noqa: F401,F403
from .classifier import repghostnet_classifier_cfg
from .layers import *  # noqa: F401,F403

__all__ = ['repghostnet_classifier_cfg']
