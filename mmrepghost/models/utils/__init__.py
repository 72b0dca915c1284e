from .conv_norm import build_conv_norm
from .fuse import (conv_bn_kernel_bias, conv_from_kernel_bias, fuse_conv_bn_, merge_kernel_bias,
                   pad_kernel)
from .make_divisible import make_divisible

__all__ = [
    'build_conv_norm', 'conv_bn_kernel_bias', 'conv_from_kernel_bias', 'fuse_conv_bn_',
    'make_divisible', 'merge_kernel_bias', 'pad_kernel'
]
