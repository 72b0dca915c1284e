import copy
import logging

import pytest
import torch
from mmpretrain.registry import MODELS as PRETRAIN_MODELS
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from mmrepghost.deploy import Fused, reparameterize_model
from mmrepghost.models import ARCH_WIDTHS, RepGhostNet, repghostnet_classifier_cfg
from tests.conftest import randomize_bn_, relative_diff


@pytest.mark.parametrize('arch', list(ARCH_WIDTHS))
def test_classifier_logits_unchanged_by_reparameterization(arch):
    model = randomize_bn_(PRETRAIN_MODELS.build(repghostnet_classifier_cfg(arch))).eval()
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        expected = model(x)
    fused = reparameterize_model(model)
    assert fused.modules == ('backbone', ) and 0 <= fused.max_abs_diff < 1e-3
    with torch.no_grad():
        assert relative_diff(expected, model(x)) < 1e-5
    assert not any(isinstance(m, _BatchNorm) for m in model.backbone.modules())
    again = reparameterize_model(model)  # idempotent: nothing left to fuse
    assert again.modules == ('backbone', ) and again.max_abs_diff == 0.0


def test_reparameterize_detector_built_by_mmdet():
    from mmdet.registry import MODELS as DET_MODELS
    detector = DET_MODELS.build(dict(
        _scope_='mmdet',
        type='RetinaNet',
        data_preprocessor=dict(type='DetDataPreprocessor', mean=[0, 0, 0], std=[1, 1, 1]),
        backbone=dict(type='RepGhostNet', arch='0.5x', out_indices=(1, 2, 3),
                      norm_cfg=dict(type='SyncBN')),
        neck=dict(type='FPN', in_channels=[20, 40, 80], out_channels=32, start_level=0,
                  add_extra_convs='on_input', num_outs=5),
        bbox_head=dict(
            type='RetinaHead', num_classes=3, in_channels=32, feat_channels=32, stacked_convs=1,
            anchor_generator=dict(type='AnchorGenerator', octave_base_scale=4,
                                  scales_per_octave=3, ratios=[0.5, 1.0, 2.0],
                                  strides=[8, 16, 32, 64, 128]),
            bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[.0, .0, .0, .0],
                            target_stds=[1.0, 1.0, 1.0, 1.0]),
            loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25,
                          loss_weight=1.0),
            loss_bbox=dict(type='L1Loss', loss_weight=1.0))))
    randomize_bn_(detector).eval()
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        expected = detector(x, mode='tensor')
    assert reparameterize_model(detector).modules == ('backbone', )
    with torch.no_grad():
        outputs = detector(x, mode='tensor')
    for level_expected, level_out in zip(sum(expected, []), sum(outputs, [])):
        assert relative_diff(level_expected, level_out) < 1e-5
    assert detector.backbone.deploy
    assert not any(isinstance(m, _BatchNorm) for m in detector.backbone.modules())


def test_wrapped_model_and_training_mode_preserved():
    model = nn.Sequential(RepGhostNet('0.5x', out_indices=(2, ))).train()
    assert reparameterize_model(model).modules == ('0', )
    assert model[0].deploy and model[0].training


def test_model_itself_fusable_is_named_by_its_class():
    assert reparameterize_model(RepGhostNet('0.5x', out_indices=(2, ))).modules == (
        'RepGhostNet', )


def test_nothing_to_fuse_is_falsy_and_said(caplog):
    logger = logging.getLogger('test_nothing_to_fuse')
    with caplog.at_level(logging.WARNING, logger=logger.name):
        fused = reparameterize_model(nn.Sequential(nn.Conv2d(3, 8, 3)), logger=logger)
    assert not fused and fused == Fused() and fused.max_abs_diff == 0.0
    assert 'nothing to re-parameterize: no module of Sequential' in caplog.text


class NeverDeploys(nn.Module):
    """A foreign fusable module whose switch_to_deploy leaves its training branches."""

    deploy = False

    def switch_to_deploy(self):
        pass


def test_training_branches_left_after_switch_are_an_error():
    with pytest.raises(RuntimeError, match=r"\['0'\] still have training branches"):
        reparameterize_model(nn.Sequential(NeverDeploys()))


def test_unfusable_variant_is_refused_before_any_change():
    model = nn.Sequential(RepGhostNet('0.5x', cheap_act=True))
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(RuntimeError, match=r'\+ReLU'):
        reparameterize_model(model)
    assert list(model.state_dict()) == list(before)


def test_verification_reports_a_broken_fusion(monkeypatch):
    """The returned diff is measured, not assumed: a wrong fusion shows up in it."""
    import mmrepghost.models.layers.repghost_module as repghost_module
    real = repghost_module.merge_kernel_bias

    def broken(parts, kernel_size):
        kernel, bias = real(parts, kernel_size)
        return kernel, bias + 1.0

    monkeypatch.setattr(repghost_module, 'merge_kernel_bias', broken)
    model = randomize_bn_(RepGhostNet('0.5x')).eval()
    assert reparameterize_model(model).max_abs_diff > 1e-2


def test_check_fusable_runs_once_per_module(monkeypatch):
    from mmrepghost.models import RepGhostModule
    calls = []
    real = RepGhostModule.check_fusable
    monkeypatch.setattr(RepGhostModule, 'check_fusable',
                        lambda self: calls.append(id(self)) or real(self))
    model = RepGhostNet('0.5x', out_indices=(1, ))
    reparameterize_model(model)
    modules = [m for m in model.modules() if isinstance(m, RepGhostModule)]
    assert modules and sorted(calls) == sorted(id(m) for m in modules)
