from .conv_norm_act import ConvNormAct
from .repghost_bottleneck import RepGhostBottleneck
from .repghost_module import REPARAM_BRANCHES, RepGhostModule
from .squeeze_excite import SqueezeExcite

__all__ = [
    'ConvNormAct', 'RepGhostBottleneck', 'RepGhostModule', 'REPARAM_BRANCHES', 'SqueezeExcite'
]
