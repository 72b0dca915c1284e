"""How "peaked" the depthwise kernels are, before and after re-parameterization.

The claim to check: RepGhost folds the BatchNorm of its identity branch into the centre tap of
the cheap depthwise conv, which could make that tap an outlier that INT8 quantization must
cover at the cost of the other taps' resolution. :func:`depthwise_tap_ratios` measures it per
depthwise conv of a network, on BN-folded kernels (the form an INT8 backend quantizes):

- **before**: the depthwise conv alone with its own BatchNorm folded in (the BN that directly
  follows it), i.e. the kernel without any merged re-parameterization branch;
- **after**: the same conv in the deployed model (the fused kernel: for RepGhost, the identity
  BN and any other branch added in), its BN folded if it still has one.

Both foldings use the project's one routine (:func:`mmrepghost.models.utils.conv_bn_kernel_bias`,
float64), and the deployed model comes from :func:`~mmrepghost.deploy.reparameterize_model`
unless given. A network without re-parameterization (MobileNetV2) gives before == after.
"""
import copy
import math
from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from ...models.utils import conv_bn_kernel_bias
from ..reparameterize import reparameterize_model

__all__ = ['TapRatioRow', 'tap_ratios', 'find_depthwise_convs', 'depthwise_tap_ratios',
           'format_table']


@dataclass(frozen=True)
class TapRatioRow:
    """One depthwise conv: the statistics of its kernel before and after fusion.

    ``ratio_*``: over output channels, the median and the maximum of :func:`tap_ratios`
    (channels whose ratio is undefined, all taps zero, are left out; NaN if every one is;
    for an even count the median is the lower middle value, as ``torch.median`` takes it).
    ``spread_*``: ``max_c M_c / median_c M_c`` with ``M_c`` the largest |tap| of channel c:
    how far the channel that sets a per-tensor INT8 scale is above a typical channel.
    ``centre_*``: the share of channels whose largest |tap| is the centre tap.
    ``merged``: the deployed kernel differs from the conv with its own BN folded (beyond
    float32 rounding), i.e. fusion added branches to it.
    """

    name: str
    kernel: Tuple[int, int]
    channels: int
    stride: Tuple[int, int]
    merged: bool
    ratio_median_before: float
    ratio_max_before: float
    ratio_median_after: float
    ratio_max_after: float
    spread_before: float
    spread_after: float
    centre_before: float
    centre_after: float


def tap_ratios(kernel: Tensor) -> Tensor:
    """Per output channel of a depthwise ``kernel`` (C, 1, kh, kw): ``max|w| / mean|w|`` of
    the other taps.

    For channel c with taps ``w_1..w_n`` (n = kh * kw >= 2) and ``j = argmax_i |w_i|``:
    ``ratio_c = |w_j| / mean_{i != j} |w_i|`` (the largest tap is left out of the mean once).
    1 means a flat kernel; with symmetric per-channel INT8 (scale ``|w_j| / 127``), the other
    taps get on average ``127 / ratio_c`` levels, so a ratio near 127 rounds them to 0 or +-1.
    ``inf`` where only one tap is non-zero, NaN where all are zero. Returns float64, shape (C,).
    """
    if kernel.dim() != 4 or kernel.shape[1] != 1:
        raise ValueError(f'expected a depthwise kernel of shape (C, 1, kh, kw), got '
                         f'{tuple(kernel.shape)}')
    taps = kernel.detach().double().abs().flatten(1)
    if taps.shape[1] < 2:
        raise ValueError(f'a {tuple(kernel.shape[2:])} kernel has a single tap: no ratio')
    peak = taps.max(dim=1).values
    rest = (taps.sum(dim=1) - peak) / (taps.shape[1] - 1)
    ratio = peak / rest  # x / 0 = inf, 0 / 0 = nan
    return torch.where(peak == 0, torch.full_like(ratio, math.nan), ratio)


def _is_depthwise(module: nn.Module) -> bool:
    return (isinstance(module, nn.Conv2d) and module.groups == module.in_channels ==
            module.out_channels and module.kernel_size[0] * module.kernel_size[1] > 1)


def _conv_before_norm(parent: nn.Module) -> bool:
    """False for an mmcv ``ConvModule`` built with the norm before the conv."""
    order = getattr(parent, 'order', None)
    if isinstance(order, tuple) and 'conv' in order and 'norm' in order:
        return order.index('conv') < order.index('norm')
    return True


def find_depthwise_convs(model: nn.Module) -> List[Tuple[str, nn.Conv2d, Optional[_BatchNorm]]]:
    """``(name, conv, bn)`` for each depthwise conv of ``model`` (``groups == in_channels ==
    out_channels``, more than one tap; 1x1 depthwise convs have no "other taps" and are left
    out), in module order.

    ``bn`` is the conv's own BatchNorm: the sibling registered right after it in the same
    parent, with ``num_features == out_channels`` (``nn.Sequential(conv, bn)``, mmcv's
    ``ConvModule``, ``conv_dw``/``bn_dw`` pairs); ``None`` where there is none (a deployed,
    already folded conv).
    """
    norms = {}  # id(conv) -> its BN
    for parent in model.modules():
        children = list(parent.children())
        for conv, following in zip(children, children[1:]):
            if (_is_depthwise(conv) and isinstance(following, _BatchNorm) and
                    following.num_features == conv.out_channels and _conv_before_norm(parent)):
                norms[id(conv)] = following
    return [(name, module, norms.get(id(module))) for name, module in model.named_modules()
            if _is_depthwise(module)]


def _summary(kernel: Tensor) -> Tuple[float, float, float, float]:
    """Median ratio, max ratio, spread, centre share of a folded depthwise kernel."""
    ratios = tap_ratios(kernel)
    defined = ratios[~torch.isnan(ratios)]
    median = defined.median().item() if defined.numel() else math.nan
    worst = defined.max().item() if defined.numel() else math.nan
    taps = kernel.abs().flatten(1)
    peaks = taps.max(dim=1).values
    typical = peaks.median().item()
    spread = peaks.max().item() / typical if typical > 0 else math.inf
    kh, kw = kernel.shape[2:]
    centre = (kh // 2) * kw + kw // 2
    is_centre = taps.argmax(dim=1) == centre
    centre_share = is_centre[peaks > 0].double().mean().item() if (peaks > 0).any() else 0.0
    return median, worst, spread, centre_share


@torch.no_grad()
def depthwise_tap_ratios(train_model: nn.Module,
                         deploy_model: Optional[nn.Module] = None) -> List[TapRatioRow]:
    """One :class:`TapRatioRow` per depthwise conv (see :func:`find_depthwise_convs`) of
    ``train_model``, in module order.

    Args:
        train_model: the model in its training structure (branches not fused). Not modified.
        deploy_model: the same weights in the deployed structure (e.g. a ``*_deploy.pth``
            loaded by :func:`~mmrepghost.deploy.load_trained_model`); default: a copy of
            ``train_model`` fused by :func:`~mmrepghost.deploy.reparameterize_model` (a model
            without fusable modules stays as it is, so before == after).

    The per-channel ratio is :func:`tap_ratios` (``max|w|`` over the mean |w| of the other
    taps) of the kernel with its BN folded in; "before" uses ``train_model``'s conv and its
    own BN, "after" the conv of the same name in ``deploy_model``.

    Raises:
        ValueError: ``deploy_model`` lacks a depthwise conv of ``train_model`` (by name) or
            has it with another shape.
    """
    if deploy_model is None:
        deploy_model = copy.deepcopy(train_model)
        deploy_model.eval()  # some backbones' train() returns None: no chaining
        reparameterize_model(deploy_model, logger='silent')
    deployed = {name: (conv, bn) for name, conv, bn in find_depthwise_convs(deploy_model)}
    rows = []
    for name, conv, bn in find_depthwise_convs(train_model):
        if name not in deployed:
            raise ValueError(f'the deployed model has no depthwise conv {name!r} (it has '
                             f'{len(deployed)}: {list(deployed)[:3]}...); pass the deployed '
                             'form of the same network')
        deploy_conv, deploy_bn = deployed[name]
        if deploy_conv.weight.shape != conv.weight.shape:
            raise ValueError(f'{name}: kernel {tuple(conv.weight.shape)} in the train model, '
                             f'{tuple(deploy_conv.weight.shape)} in the deployed one')
        before = conv_bn_kernel_bias(conv, bn)[0]
        after = conv_bn_kernel_bias(deploy_conv, deploy_bn)[0]
        tolerance = 1e-5 * max(before.abs().max().item(), 1e-12)
        merged = not torch.allclose(after, before, rtol=1e-5, atol=tolerance)
        b_median, b_max, b_spread, b_centre = _summary(before)
        a_median, a_max, a_spread, a_centre = _summary(after)
        rows.append(TapRatioRow(
            name=name, kernel=tuple(conv.kernel_size), channels=conv.out_channels,
            stride=tuple(conv.stride), merged=merged, ratio_median_before=b_median,
            ratio_max_before=b_max, ratio_median_after=a_median, ratio_max_after=a_max,
            spread_before=b_spread, spread_after=a_spread, centre_before=b_centre,
            centre_after=a_centre))
    return rows


def _num(value: float) -> str:
    if math.isnan(value):
        return '-'
    if math.isinf(value):
        return 'inf'
    return f'{value:.3g}' if value < 1000 else f'{value:.0f}'


def format_table(rows: List[TapRatioRow]) -> str:
    """``rows`` as a Markdown table (one line per depthwise conv), ending with a newline."""
    lines = [
        '| depthwise conv | kernel | ch | stride | merged | ratio median before | after | '
        'ratio max before | after | spread before | after | centre is max before | after |',
        '|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|',
    ]
    for r in rows:
        lines.append(
            f'| `{r.name}` | {r.kernel[0]}x{r.kernel[1]} | {r.channels} | '
            f'{r.stride[0]} | {"yes" if r.merged else "no"} | '
            f'{_num(r.ratio_median_before)} | {_num(r.ratio_median_after)} | '
            f'{_num(r.ratio_max_before)} | {_num(r.ratio_max_after)} | '
            f'{_num(r.spread_before)} | {_num(r.spread_after)} | '
            f'{r.centre_before:.0%} | {r.centre_after:.0%} |')
    return '\n'.join(lines) + '\n'
