"""Squeeze-and-excitation with the hard-sigmoid gate of GhostNet/RepGhostNet."""
from mmcv.cnn import build_activation_layer
from mmengine.model import BaseModule
from torch import Tensor, nn

from ...utils.validation import ACTIVATIONS, check_layer_cfg, check_positive_int, check_ratio
from ..utils import make_divisible


class SqueezeExcite(BaseModule):
    """SE block: ``x * hard_sigmoid(conv_expand(act(conv_reduce(avgpool(x)))))``.

    The squeeze width is ``make_divisible(channels * se_ratio, 4)`` as in the official model;
    the gate is ``relu6(x + 3) / 6``. Submodule names follow the official checkpoints.

    Shapes: (N, C, H, W) -> (N, C, H, W).
    """

    def __init__(self, channels: int, se_ratio: float = 0.25,
                 act_cfg: dict = dict(type='ReLU'), init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        check_positive_int('channels', channels)
        check_ratio('se_ratio', se_ratio, 0, 1, low_inclusive=False)
        check_layer_cfg('act_cfg', act_cfg, ACTIVATIONS)
        squeeze = make_divisible(channels * se_ratio, 4)
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_reduce = nn.Conv2d(channels, squeeze, 1, bias=True)
        self.act1 = build_activation_layer(act_cfg)
        self.conv_expand = nn.Conv2d(squeeze, channels, 1, bias=True)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: Tensor) -> Tensor:
        scale = self.conv_expand(self.act1(self.conv_reduce(self.avg_pool(x))))
        return x * self.gate(scale)
