from .backbones import *  # noqa: F401,F403
from .classifier import repghostnet_classifier_cfg
from .convert import ConversionError, convert_checkpoint, convert_state_dict
from .fusable import Fusable, is_fusable
from .layers import *  # noqa: F401,F403
from .neck_check import check_neck_in_channels

__all__ = [
    'ConversionError', 'Fusable', 'check_neck_in_channels', 'convert_checkpoint',
    'convert_state_dict', 'is_fusable', 'repghostnet_classifier_cfg'
]
