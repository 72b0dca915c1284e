"""Conv + norm + activation with a foldable norm (the last 1x1 conv of RepGhostNet)."""
from mmcv.cnn import build_activation_layer
from mmengine.model import BaseModule
from torch import Tensor

from ...utils.validation import check_conv_block_args
from ..utils import build_conv_norm, fuse_conv_bn_


class ConvNormAct(BaseModule):
    """``act(bn1(conv(x)))``; deployed: ``act(conv(x))`` with the norm folded.

    The attribute names (``conv``, ``bn1``, ``act1``) follow the official checkpoints.

    Shapes: (N, in_channels, H, W) -> (N, out_channels, H / stride, W / stride).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1,
                 stride: int = 1, norm_cfg: dict = dict(type='BN'),
                 act_cfg: dict = dict(type='ReLU'), deploy: bool = False, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        check_conv_block_args(in_channels, out_channels, kernel_size, stride, norm_cfg, act_cfg,
                              deploy)
        self.conv, self.bn1 = build_conv_norm(in_channels, out_channels, kernel_size, stride,
                                              norm_cfg=norm_cfg, deploy=deploy)
        self.act1 = build_activation_layer(act_cfg)
        self.deploy = deploy

    def forward(self, x: Tensor) -> Tensor:
        return self.act1(self.bn1(self.conv(x)))

    def switch_to_deploy(self) -> None:
        fuse_conv_bn_(self, 'conv', 'bn1')
        self.deploy = True
