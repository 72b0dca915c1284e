from .conv_norm import build_conv_norm
from .fuse import (conv_bn_kernel_bias, conv_from_kernel_bias, fuse_conv_bn_, merge_kernel_bias,
                   pad_kernel)
from .make_divisible import make_divisible
from .validation import (ACTIVATIONS, FOLDABLE_NORMS, check_bool, check_conv_block_args,
                         check_in_range, check_layer_cfg, check_odd_kernel, check_positive_int,
                         check_ratio)

__all__ = [
    'ACTIVATIONS', 'FOLDABLE_NORMS', 'build_conv_norm', 'check_bool', 'check_conv_block_args',
    'check_in_range',
    'check_layer_cfg', 'check_odd_kernel', 'check_positive_int', 'check_ratio',
    'conv_bn_kernel_bias', 'conv_from_kernel_bias', 'fuse_conv_bn_', 'make_divisible',
    'merge_kernel_bias', 'pad_kernel'
]
