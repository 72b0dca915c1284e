"""The one fusion routine of mmrepghost: fold BatchNorm into convolutions, merge branches.

Every path that re-parameterizes (module, bottleneck, backbone, whole model, hook, tools,
export) ends here. In eval mode ``bn(conv(x)) = conv'(x)`` with

    W' = W * gamma / sqrt(var + eps)          (per output channel)
    b' = beta + (b - mean) * gamma / sqrt(var + eps)

and branches that are summed before a non-linearity add their (zero-padded) kernels and biases.
The arithmetic runs in float64 and is cast once, into the fused conv's dtype: a half-precision
model, or a BN whose variance is far below ``eps`` (``gamma / sqrt(eps)`` scales of ~300),
then loses nothing to the fusion itself.
"""
from typing import Iterable, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

KernelBias = Tuple[Tensor, Tensor]


def conv_bn_kernel_bias(conv: Optional[nn.Conv2d], bn: Optional[_BatchNorm],
                        channels: Optional[int] = None,
                        like: Optional[Tensor] = None) -> KernelBias:
    """Kernel and bias of ``bn(conv(x))`` as a single convolution.

    Args:
        conv: the convolution, or ``None`` for an identity mapping (then ``channels`` gives the
            width and the result is a depthwise 1x1 identity kernel of shape (C, 1, 1, 1)).
        bn: the BatchNorm (any ``_BatchNorm``, SyncBN included), or ``None`` for no norm.
        channels: number of channels of an identity branch.
        like: a tensor whose device an identity kernel takes (default: the BN's).

    Returns float64 ``(kernel, bias)``; :func:`conv_from_kernel_bias` casts them.
    """
    if conv is None:
        if channels is None:
            raise ValueError('an identity branch needs `channels`')
        reference = like if like is not None else (
            bn.running_mean if bn is not None else torch.empty(0))
        kernel = reference.new_ones(channels, 1, 1, 1, dtype=torch.float64)
        bias = reference.new_zeros(channels, dtype=torch.float64)
    else:
        kernel = conv.weight.detach().double()
        bias = (conv.bias.detach().double() if conv.bias is not None else
                kernel.new_zeros(conv.out_channels))
    if bn is None:
        return kernel, bias
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError(f'cannot fold {bn!r}: it tracks no running statistics')
    std = torch.sqrt(bn.running_var.detach().double() + bn.eps)
    gamma = bn.weight.detach().double() if bn.weight is not None else torch.ones_like(std)
    beta = bn.bias.detach().double() if bn.bias is not None else torch.zeros_like(std)
    scale = gamma / std
    return (kernel * scale.reshape(-1, 1, 1, 1),
            beta + (bias - bn.running_mean.detach().double()) * scale)


def pad_kernel(kernel: Tensor, kernel_size: Tuple[int, int]) -> Tensor:
    """Zero-pad a (smaller, odd-sized) kernel to ``kernel_size`` around its centre."""
    pad_h = (kernel_size[0] - kernel.shape[2]) // 2
    pad_w = (kernel_size[1] - kernel.shape[3]) // 2
    if pad_h < 0 or pad_w < 0:
        raise ValueError(f'cannot pad a {tuple(kernel.shape[2:])} kernel to {kernel_size}')
    return F.pad(kernel, [pad_w, pad_w, pad_h, pad_h])


def merge_kernel_bias(parts: Iterable[KernelBias], kernel_size: Tuple[int, int]) -> KernelBias:
    """Sum branches ``(kernel, bias)`` that are added before a non-linearity."""
    parts = list(parts)
    kernel = sum(pad_kernel(k, kernel_size) for k, _ in parts)
    bias = sum(b for _, b in parts)
    return kernel, bias


def conv_from_kernel_bias(template: nn.Conv2d, kernel: Tensor, bias: Tensor) -> nn.Conv2d:
    """A biased ``nn.Conv2d`` with ``template``'s geometry, device and dtype holding ``kernel``
    and ``bias`` (cast once, here)."""
    conv = nn.Conv2d(template.in_channels, template.out_channels, template.kernel_size,
                     stride=template.stride, padding=template.padding,
                     dilation=template.dilation, groups=template.groups, bias=True,
                     padding_mode=template.padding_mode)
    conv.to(device=template.weight.device, dtype=template.weight.dtype)
    with torch.no_grad():
        conv.weight.copy_(kernel)
        conv.bias.copy_(bias)
    return conv


def fuse_conv_bn_(parent: nn.Module, conv_name: str, bn_name: str) -> None:
    """Fold ``parent.<bn_name>`` into ``parent.<conv_name>`` in place.

    The conv is replaced by a biased conv and the norm by ``nn.Identity``, so the state-dict
    keys of the conv stay where they were. Works on ``nn.Sequential`` children ('0', '1').
    Idempotent: a norm that is already ``nn.Identity`` leaves the conv untouched.
    """
    bn = getattr(parent, bn_name)
    if isinstance(bn, nn.Identity):
        return
    if not isinstance(bn, _BatchNorm):
        raise TypeError(f'{type(parent).__name__}.{bn_name} is {type(bn).__name__}; '
                        'only BatchNorm layers (BN, SyncBN) can be folded into a conv')
    conv = getattr(parent, conv_name)
    setattr(parent, conv_name, conv_from_kernel_bias(conv, *conv_bn_kernel_bias(conv, bn)))
    setattr(parent, bn_name, nn.Identity())
