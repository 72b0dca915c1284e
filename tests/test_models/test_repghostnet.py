import pytest
import timm
import torch
from torch import nn

from mmrepghost.models import ARCH_WIDTHS, RepGhostNet
from tests.conftest import TIMM_NAMES, randomize_bn_, relative_diff

# channels of timm's features_only outputs (strides 4/8/16/32), from the issue and timm
TIMM_FEATURE_CHANNELS = {'1.0x': (24, 40, 80, 160), '1.3x': (32, 52, 104, 208),
                         '1.5x': (36, 60, 120, 240)}


@pytest.mark.parametrize('arch', list(TIMM_FEATURE_CHANNELS))
def test_detection_features_strides_and_channels(arch):
    model = RepGhostNet(arch=arch, out_indices=(0, 1, 2, 3)).eval()
    outs = model(torch.randn(1, 3, 320, 320))
    assert [o.shape[1] for o in outs] == list(TIMM_FEATURE_CHANNELS[arch])
    assert [320 // o.shape[-1] for o in outs] == [4, 8, 16, 32]
    assert model.out_channels == TIMM_FEATURE_CHANNELS[arch]
    # blocks after stage 3 are not built, so DDP sees no unused parameters
    assert len(model.blocks) == 8


@pytest.mark.parametrize('arch', list(ARCH_WIDTHS))
def test_features_match_timm_features_only(arch):
    """Channels and strides of stages 0-3 equal timm's features_only outputs at every width."""
    ref = timm.create_model(TIMM_NAMES[arch], features_only=True, out_indices=(1, 2, 3, 4))
    ours = RepGhostNet(arch=arch, out_indices=(0, 1, 2, 3)).eval()
    assert ours.out_channels == tuple(ref.feature_info.channels())
    with torch.no_grad():
        shapes = [tuple(o.shape) for o in ours(torch.randn(1, 3, 128, 128))]
        ref_shapes = [tuple(o.shape) for o in ref(torch.randn(1, 3, 128, 128))]
    assert shapes == ref_shapes


@pytest.mark.parametrize('arch', list(ARCH_WIDTHS))
def test_stage_channels_of_unbuilt_stages_equal_built_ones(arch):
    """``stage_channels`` (used in error messages) lists what a full backbone outputs."""
    partial = RepGhostNet(arch=arch, out_indices=(0, ))
    full = RepGhostNet(arch=arch, out_indices=(0, 1, 2, 3, 4)).eval()
    with torch.no_grad():
        outs = full(torch.randn(1, 3, 64, 64))
    assert partial.stage_channels == full.stage_channels == tuple(o.shape[1] for o in outs)


def test_widen_factor_and_arch_agree():
    assert RepGhostNet(widen_factor=1.3).widen_factor == ARCH_WIDTHS['1.3x']
    a = RepGhostNet(arch='1.3x').state_dict()
    b = RepGhostNet(widen_factor=1.3).state_dict()
    assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}


@pytest.mark.parametrize('arch', list(ARCH_WIDTHS))
def test_deploy_all_outputs_match_and_no_batchnorm_left(arch):
    model = randomize_bn_(RepGhostNet(arch=arch, out_indices=(0, 1, 2, 3, 4))).eval()
    x = torch.randn(2, 3, 96, 96)
    expected = model(x)
    model.switch_to_deploy()
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    kinds = {type(m).__name__ for m in model.modules()
             if not list(m.children()) and not isinstance(m, nn.Sequential)}
    assert kinds <= {'Conv2d', 'ReLU', 'Identity', 'AdaptiveAvgPool2d', 'Hardsigmoid'}, kinds
    for e, o in zip(expected, model(x)):
        assert relative_diff(e, o) < 1e-5
    # a model built with deploy=True takes the deployed weights key for key
    built = RepGhostNet(arch=arch, out_indices=(0, 1, 2, 3, 4), deploy=True)
    built.load_state_dict(model.state_dict(), strict=True)


@pytest.mark.parametrize('arch', list(ARCH_WIDTHS))
@pytest.mark.parametrize('branches', [(), ('identity', ), ('dwconv1x1', ), ('bn', 'dwconv1x1'),
                                      ('bn', 'identity', 'dwconv1x1')])
def test_deploy_table6_variants_at_every_width(arch, branches):
    """In float64: with three summed branches and random BN statistics the activations reach
    ~1e4 after 16 blocks, where float32 rounding alone is ~2e-5 relative; float64 isolates the
    fusion algebra (a wrong kernel or bias shows up as >1e-3)."""
    model = randomize_bn_(RepGhostNet(arch, reparam_branches=branches,
                                      out_indices=(0, 1, 2, 3, 4))).double().eval()
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    expected = model(x)
    model.switch_to_deploy()
    for e, o in zip(expected, model(x)):
        assert relative_diff(e, o) < 1e-10


def test_relu_variant_backbone_refuses_deploy_without_changing():
    model = RepGhostNet('0.5x', cheap_act=True)
    keys = list(model.state_dict())
    with pytest.raises(RuntimeError, match='cannot switch to deploy'):
        model.switch_to_deploy()
    assert list(model.state_dict()) == keys and not model.deploy


def test_syncbn_model_deploys_in_eval():
    model = randomize_bn_(RepGhostNet('0.5x', norm_cfg=dict(type='SyncBN'))).eval()
    assert any(isinstance(m, nn.SyncBatchNorm) for m in model.modules())
    x = torch.randn(1, 3, 64, 64)
    expected = model(x)
    model.switch_to_deploy()
    assert relative_diff(expected[0], model(x)[0]) < 1e-5


@pytest.mark.parametrize('frozen_stages', [0, 2, 5])
def test_frozen_stages_really_freeze(frozen_stages):
    model = RepGhostNet('0.5x', out_indices=(0, 1, 2, 3, 4), frozen_stages=frozen_stages)
    model.train()
    frozen = [model.conv_stem, model.bn1]
    if frozen_stages:
        frozen += list(model.blocks[:model.stage_ends[frozen_stages - 1] + 1])
    trainable = [m for m in model.blocks[len(frozen) - 2:]]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad] or
                          [nn.Parameter(torch.zeros(1))], lr=0.1)
    loss = sum(o.mean() for o in model(torch.randn(2, 3, 64, 64)))
    if loss.requires_grad:  # frozen_stages=5 freezes everything
        loss.backward()
        opt.step()
    after = model.state_dict()
    for module in frozen:
        assert not module.training
        assert all(not p.requires_grad for p in module.parameters())
    frozen_keys = {k for k in before if k.startswith(('conv_stem', 'bn1')) or any(
        k.startswith(f'blocks.{i}.') for i in range(len(frozen) - 2))}
    for key in frozen_keys:
        torch.testing.assert_close(after[key], before[key], msg=key)
    if trainable:
        changed = [k for k in before if k not in frozen_keys
                   and not torch.equal(before[k], after[k])]
        assert changed  # the rest still trains


def test_norm_eval_keeps_bn_statistics():
    model = RepGhostNet('0.5x', norm_eval=True).train()
    stats = {k: v.clone() for k, v in model.state_dict().items() if 'running' in k}
    model(torch.randn(2, 3, 64, 64))
    for key, value in stats.items():
        torch.testing.assert_close(model.state_dict()[key], value)
    model_train = RepGhostNet('0.5x').train()
    model_train.load_state_dict(model.state_dict())
    model_train(torch.randn(2, 3, 64, 64))
    assert not torch.equal(model_train.bn1.running_mean, stats['bn1.running_mean'])


def test_with_cp_trains():
    model = RepGhostNet('0.5x', with_cp=True).train()
    out = model(torch.randn(2, 3, 64, 64, requires_grad=True))[0]
    out.mean().backward()
    assert model.conv_stem.weight.grad is not None


@pytest.mark.parametrize('kwargs,error,message', [
    (dict(arch='3.0x'), ValueError, r"arch='3.0x' is unknown; allowed: \['0.5x', '0.58x'"),
    (dict(widen_factor=0.75), ValueError, r'widen_factor=0.75 is not a width of the paper'),
    (dict(out_indices=(0, 5)), ValueError, r'out_indices entry must be an int in \[-5, 4\], '
                                           r'got 5'),
    (dict(out_indices=()), ValueError, 'non-empty sequence'),
    (dict(out_indices=(1, -4)), ValueError, 'names a stage twice'),
    (dict(frozen_stages=6), ValueError, r'frozen_stages must be an int in \[-1, 5\], got 6'),
    (dict(frozen_stages=-2), ValueError, r'frozen_stages must be an int in \[-1, 5\], got -2'),
    (dict(norm_cfg=dict(type='GN', num_groups=4)), ValueError,
     r"norm_cfg=\{'type': 'GN', 'num_groups': 4\} is not supported: its type must be one of "
     r"\('BN', 'BN2d', 'SyncBN'\)"),
    (dict(act_cfg=dict(type='NoSuchAct')), ValueError,
     r"act_cfg=\{'type': 'NoSuchAct'\} is not supported: its type must be one of \('ReLU'"),
])
def test_backbone_rejects_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        RepGhostNet(**kwargs)


def test_registered_in_mmdet_and_mmpretrain():
    from mmdet.registry import MODELS as DET
    from mmpretrain.registry import MODELS as PRE
    for registry in (DET, PRE):
        model = registry.build(dict(type='RepGhostNet', arch='0.5x', out_indices=(3, )))
        assert isinstance(model, RepGhostNet)


def test_missing_pretrained_checkpoint_says_how_to_get_it(tmp_path):
    missing = str(tmp_path / 'repghostnet_1.3x_in1k.pth')
    model = RepGhostNet('1.3x', init_cfg=dict(type='Pretrained', checkpoint=missing,
                                              prefix='backbone.'))
    with pytest.raises(FileNotFoundError, match=r'does not exist. Convert the official.*'
                       r'tools/convert_weights.py .*--from official.*init_cfg=None'):
        model.init_weights()
