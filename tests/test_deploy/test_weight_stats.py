"""deploy.quantize.weight_stats: depthwise tap ratios before and after re-parameterization."""
import copy
import math

import pytest
import torch
from torch import nn

from mmrepghost.deploy.quantize.weight_stats import (depthwise_tap_ratios, find_depthwise_convs,
                                                     format_table, tap_ratios)
from mmrepghost.models import RepGhostModule, RepGhostNet
from tests.conftest import randomize_bn_


def identity_bn(channels):
    """A BN that is the identity in eval mode (folding leaves the kernel as it is)."""
    bn = nn.BatchNorm2d(channels, eps=0.0)
    return bn.eval()


def test_tap_ratios_of_a_hand_built_kernel():
    kernel = torch.ones(4, 1, 3, 3)
    kernel[0, 0, 1, 1] = 10  # centre 10, eight taps of 1: 10 / 1
    kernel[1] = torch.tensor([[1., -2, 3], [-4, 5, -6], [7, -8, 12]])  # 12 / mean(1..8) = 12 / 4.5
    kernel[2] = 0  # all zero: undefined
    kernel[3] = 0
    kernel[3, 0, 0, 0] = -3  # a single non-zero tap
    ratios = tap_ratios(kernel)
    assert ratios.dtype == torch.float64
    assert ratios[0].item() == pytest.approx(10.0)
    assert ratios[1].item() == pytest.approx(12 / 4.5)
    assert math.isnan(ratios[2].item()) and math.isinf(ratios[3].item())
    with pytest.raises(ValueError, match='single tap'):
        tap_ratios(torch.ones(2, 1, 1, 1))
    with pytest.raises(ValueError, match=r'\(C, 1, kh, kw\)'):
        tap_ratios(torch.ones(2, 2, 3, 3))


def test_row_of_a_hand_built_layer_folds_its_bn():
    conv = nn.Conv2d(3, 3, 3, padding=1, groups=3, bias=False)
    bn = identity_bn(3)
    with torch.no_grad():
        conv.weight.fill_(1)
        conv.weight[0, 0, 1, 1] = 10  # ratio 10, centre
        conv.weight[1, 0, 0, 0] = 4  # ratio 4, corner
        conv.weight[2] *= 2  # flat: ratio 1, peak 2
        bn.weight.copy_(torch.tensor([1., 1., 0.5]))  # folded: channel 2 back to 1
    model = nn.Sequential(conv, bn, nn.ReLU(), nn.Conv2d(3, 3, 1))  # the 1x1 is not counted
    [row] = depthwise_tap_ratios(model)
    assert row.name == '0' and row.kernel == (3, 3) and row.channels == 3 and not row.merged
    assert (row.ratio_median_before, row.ratio_max_before) == pytest.approx((4.0, 10.0))
    assert (row.ratio_median_after, row.ratio_max_after) == pytest.approx((4.0, 10.0))
    assert row.spread_before == pytest.approx(10 / 4)  # peaks 10, 4, 1
    assert row.centre_before == pytest.approx(1 / 3)  # a flat channel: its first tap wins
    table = format_table([row])
    assert table.count('\n') == 3 and '| `0` | 3x3 | 3 | 1 | no | 4 | 4 | 10 | 10 |' in table


def test_identity_bn_of_repghost_module_raises_the_ratio_after_fusion():
    module = randomize_bn_(RepGhostModule(8, 8, reparam_branches=('bn', ))).eval()
    with torch.no_grad():
        module.fusion_bn[0].weight.fill_(50.0)  # the identity branch's BN: a large gamma
        module.fusion_bn[0].running_var.fill_(1.0)
    [name] = [n for n, *_ in find_depthwise_convs(module)]
    assert name == 'cheap_operation.0'
    state = copy.deepcopy(module.state_dict())
    [row] = depthwise_tap_ratios(module)
    assert module.state_dict().keys() == state.keys() and not module.deploy  # not modified
    assert row.merged
    assert row.ratio_max_after > 5 * row.ratio_max_before
    assert row.ratio_median_after > 5 * row.ratio_median_before
    assert row.centre_after == 1.0
    # an explicitly given deployed model gives the same numbers
    deployed = copy.deepcopy(module)
    deployed.switch_to_deploy()
    assert depthwise_tap_ratios(module, deployed) == [row]


def test_repghostnet_rows_merge_only_the_cheap_operations():
    model = randomize_bn_(RepGhostNet('0.5x', init_cfg=None)).eval()
    rows = depthwise_tap_ratios(model)
    names = {r.name: r for r in rows}
    order = [r.name for r in rows]  # module order: ghost1, the downsampling dwconv, ghost2
    assert (order.index('blocks.1.0.ghost1.cheap_operation.0') < order.index('blocks.1.0.conv_dw')
            < order.index('blocks.1.0.ghost2.cheap_operation.0'))
    cheap = [n for n in names if n.endswith('cheap_operation.0')]
    assert len(cheap) == 2 * 16  # two RepGhost modules per bottleneck
    assert all(names[n].merged for n in cheap)
    others = [n for n in names if n not in cheap]  # downsampling and shortcut dwconvs
    assert others and not any(names[n].merged for n in others)
    assert any(n.endswith('conv_dw') for n in others)
    assert any(n.endswith('shortcut.0') for n in others)
    with pytest.raises(ValueError, match='no depthwise conv'):
        depthwise_tap_ratios(model, nn.Sequential())


def test_mobilenetv2_before_equals_after():
    from mmpretrain.models import MobileNetV2
    model = randomize_bn_(MobileNetV2(widen_factor=0.5))
    model.eval()  # its train() returns None
    rows = depthwise_tap_ratios(model)
    assert len(rows) == 17  # one depthwise conv per inverted residual block
    for row in rows:
        assert not row.merged
        assert row.ratio_median_before == row.ratio_median_after
        assert row.ratio_max_before == row.ratio_max_after
        assert row.spread_before == row.spread_after
        assert row.centre_before == row.centre_after
    # the BN is folded: a large gamma on one channel shows in the spread
    layer = rows[0].name.rsplit('.', 1)[0]
    bn = dict(model.named_modules())[layer].bn
    with torch.no_grad():
        bn.weight[0] = 1e3
    assert depthwise_tap_ratios(model)[0].spread_before > rows[0].spread_before
