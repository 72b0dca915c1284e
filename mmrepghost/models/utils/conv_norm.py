"""Build a conv + norm pair in its training or its deployed (folded) form."""
from typing import Tuple

from mmcv.cnn import build_norm_layer
from torch import nn


def build_conv_norm(in_channels: int,
                    out_channels: int,
                    kernel_size: int,
                    stride: int = 1,
                    groups: int = 1,
                    norm_cfg: dict = dict(type='BN'),
                    deploy: bool = False) -> Tuple[nn.Conv2d, nn.Module]:
    """``(conv, norm)`` with 'same' padding.

    Training: bias-free conv + norm layer from ``norm_cfg``. Deployed: the shape that
    :func:`~mmrepghost.models.utils.fuse_conv_bn_` leaves behind (biased conv, ``nn.Identity``),
    so a deploy checkpoint loads into a model built with ``deploy=True``.
    """
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2,
                     groups=groups, bias=deploy)
    norm = nn.Identity() if deploy else build_norm_layer(norm_cfg, out_channels)[1]
    return conv, norm
