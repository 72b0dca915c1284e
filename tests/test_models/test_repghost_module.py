import itertools

import pytest
import torch
from torch import nn

from mmrepghost.models import REPARAM_BRANCHES, RepGhostBottleneck, RepGhostModule
from tests.conftest import randomize_bn_, relative_diff

# every fusable row of Table 6: no-reparam, id, 1x1dconv, BN, 1x1dconv+BN, all three
TABLE6_FUSABLE = [(), ('identity', ), ('dwconv1x1', ), ('bn', ), ('bn', 'dwconv1x1'),
                  ('bn', 'identity', 'dwconv1x1')]


@pytest.mark.parametrize('branches', TABLE6_FUSABLE)
@pytest.mark.parametrize('with_act', [True, False])
def test_module_deploy_matches_training_structure(branches, with_act):
    module = randomize_bn_(RepGhostModule(8, 12, dw_size=3, with_act=with_act,
                                          reparam_branches=branches)).eval()
    x = torch.randn(2, 8, 9, 11)
    expected = module(x)
    assert len(module.fusion_bn) == len(branches)
    module.switch_to_deploy()
    assert module.deploy and len(module.fusion_conv) == 0
    assert not any(isinstance(m, nn.BatchNorm2d) for m in module.modules())
    assert relative_diff(expected, module(x)) < 1e-5
    module.switch_to_deploy()  # idempotent
    assert relative_diff(expected, module(x)) < 1e-5


def test_branches_are_added_not_concatenated():
    module = RepGhostModule(4, 6, reparam_branches=('bn', 'identity')).eval()
    out = module(torch.randn(1, 4, 5, 5))
    assert out.shape == (1, 6, 5, 5)  # GhostNet would give C/2 + C/2 by concatenation
    # the identity branch really adds x1: with the cheap conv and BN branch zeroed, out == x1
    with torch.no_grad():
        module.cheap_operation[0].weight.zero_()
        module.cheap_operation[1].bias.zero_()
        module.cheap_operation[1].running_mean.zero_()
        module.fusion_bn[0].weight.zero_()
        module.fusion_bn[0].bias.zero_()
    x = torch.randn(1, 4, 5, 5)
    x1 = module.primary_conv(x)
    torch.testing.assert_close(module(x), torch.relu(x1))


def test_relu_variant_refuses_deploy():
    module = RepGhostModule(4, 8, cheap_act=True)
    assert isinstance(module.cheap_operation[-1], nn.ReLU)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    with pytest.raises(RuntimeError, match=r'cheap_act=True.*\+ReLU.*cannot switch to deploy'):
        module.switch_to_deploy()
    after = module.state_dict()
    assert before.keys() == after.keys()  # nothing was changed
    with pytest.raises(ValueError, match='cannot be built with deploy=True'):
        RepGhostModule(4, 8, cheap_act=True, deploy=True)


def test_deploy_checkpoint_loads_into_deploy_built_module():
    trained = randomize_bn_(RepGhostModule(8, 8, reparam_branches=('bn', 'dwconv1x1'))).eval()
    trained.switch_to_deploy()
    built = RepGhostModule(8, 8, deploy=True).eval()
    built.load_state_dict(trained.state_dict(), strict=True)
    x = torch.randn(1, 8, 6, 6)
    torch.testing.assert_close(built(x), trained(x))


@pytest.mark.parametrize('stride,se_ratio,in_ch,out_ch', [
    (1, 0, 16, 16), (2, 0.25, 16, 24), (1, 0.25, 24, 40), (2, 0, 40, 40)])
@pytest.mark.parametrize('shortcut', [True, False])
def test_bottleneck_deploy(stride, se_ratio, in_ch, out_ch, shortcut):
    block = randomize_bn_(RepGhostBottleneck(in_ch, 36, out_ch, 5, stride, se_ratio,
                                             shortcut=shortcut)).eval()
    x = torch.randn(2, in_ch, 14, 14)
    expected = block(x)
    assert expected.shape == (2, out_ch, 14 // stride, 14 // stride)
    block.switch_to_deploy()
    assert not any(isinstance(m, nn.BatchNorm2d) for m in block.modules())
    assert relative_diff(expected, block(x)) < 1e-5


def test_bottleneck_without_shortcut_drops_only_identity_shortcuts():
    x = torch.randn(1, 16, 8, 8)
    plain = RepGhostBottleneck(16, 8, 16, shortcut=False).eval()
    with_sc = RepGhostBottleneck(16, 8, 16, shortcut=True).eval()
    with_sc.load_state_dict(plain.state_dict())
    torch.testing.assert_close(with_sc(x), plain(x) + x)
    down = RepGhostBottleneck(16, 24, 24, stride=2, shortcut=False)
    assert down.use_shortcut and len(down.shortcut) == 4  # downsampling shortcut is kept


def test_bottleneck_with_cp_same_gradients():
    block = RepGhostBottleneck(8, 16, 8, se_ratio=0.25)
    block_cp = RepGhostBottleneck(8, 16, 8, se_ratio=0.25, with_cp=True)
    block_cp.load_state_dict(block.state_dict())
    x = torch.randn(2, 8, 6, 6, requires_grad=True)
    block(x).sum().backward()
    grad = x.grad.clone()
    x.grad = None
    block_cp(x).sum().backward()
    torch.testing.assert_close(x.grad, grad)


@pytest.mark.parametrize('kwargs,message', [
    (dict(reparam_branches=('bn', 'conv3x3')), r"reparam_branches=\('bn', 'conv3x3'\)"),
    (dict(reparam_branches=('bn', 'bn')), 'distinct names'),
    (dict(dw_size=4), 'dw_size must be a positive odd int.*got 4'),
    (dict(out_channels=0), 'out_channels must be a positive int, got 0'),
])
def test_module_rejects_bad_arguments(kwargs, message):
    args = dict(in_channels=4, out_channels=8)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        RepGhostModule(**args)


def test_all_branch_names_are_documented_in_table6():
    assert set(itertools.chain(*TABLE6_FUSABLE)) == set(REPARAM_BRANCHES)
