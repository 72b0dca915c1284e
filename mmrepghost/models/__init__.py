from .backbones import *  # noqa: F401,F403
from .classifier import repghostnet_classifier_cfg
from .layers import *  # noqa: F401,F403
from .neck_check import check_neck_in_channels, install_neck_check

install_neck_check()

__all__ = ['check_neck_in_channels', 'repghostnet_classifier_cfg']
