"""--amp without a GPU: RepGhostRunner swaps AmpOptimWrapper for CPUAmpOptimWrapper."""
import math
import os.path as osp
import re

import pytest
import torch
from mmengine.optim import AmpOptimWrapper
from torch import nn

from mmrepghost.engine import CPUAmpOptimWrapper, RepGhostRunner
from mmrepghost.utils import load_checkpoint_file
from tests.conftest import REPO_ROOT, coco_data_options, mim


def toy_model():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))


def test_mmengine_amp_wrapper_still_refuses_cpu():
    """The reason for the swap: guards against a future mmengine that lifts the assertion."""
    with pytest.raises(AssertionError, match='only available training on gpu'):
        AmpOptimWrapper(optimizer=torch.optim.SGD(toy_model().parameters(), lr=0.1))


@pytest.mark.parametrize('dtype,scaled', [(None, False), ('bfloat16', False),
                                          (torch.bfloat16, False), ('float16', True)])
def test_autocast_dtype_and_loss_scaling(dtype, scaled):
    model = toy_model()
    wrapper = CPUAmpOptimWrapper(optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                                 dtype=dtype)
    expected = torch.float16 if scaled else torch.bfloat16
    x, target = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 0, 1])
    with wrapper.optim_context(model):
        features = model[0](x)
        loss = nn.functional.cross_entropy(model(x), target)
    assert features.dtype == expected  # the conv ran in the low precision
    before = model[0].weight.detach().clone()
    wrapper.update_params(loss)
    assert model[0].weight.dtype == torch.float32  # master weights stay float32
    assert not torch.equal(before, model[0].weight) and torch.isfinite(model[0].weight).all()
    assert wrapper.loss_scaler.is_enabled() == scaled
    state = wrapper.state_dict()
    assert 'loss_scaler' in state
    if scaled:
        assert state['loss_scaler']['scale'] == 65536.0


def test_float16_dynamic_scale_skips_overflowing_steps():
    model = toy_model()
    wrapper = CPUAmpOptimWrapper(optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                                 dtype='float16', loss_scale=dict(init_scale=2.0 ** 40))
    before = [p.detach().clone() for p in model.parameters()]
    with wrapper.optim_context(model):
        loss = model(torch.randn(2, 3, 8, 8)).float().pow(2).sum() * 1e6
    wrapper.update_params(loss)  # the scaled gradients overflow float16: step skipped
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert wrapper.loss_scaler.get_scale() < 2.0 ** 40


@pytest.mark.parametrize('kwargs,message', [
    (dict(dtype='float64'), r"dtype='float64' is not supported .* \('bfloat16', 'float16'\)"),
    (dict(dtype=torch.float32), r'dtype=torch.float32 is not supported'),
    (dict(loss_scale='static'), r"loss_scale='static' is invalid: use 'dynamic'"),
])
def test_bad_arguments_name_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CPUAmpOptimWrapper(optimizer=torch.optim.SGD(toy_model().parameters(), lr=0.1),
                           **kwargs)


def test_runner_swaps_amp_wrapper_on_cpu(tmp_path, monkeypatch):
    assert not torch.cuda.is_available()
    runner = RepGhostRunner(model=toy_model(), work_dir=str(tmp_path))
    logs = []
    monkeypatch.setattr(runner.logger, 'info', logs.append)
    wrapper = runner.build_optim_wrapper(dict(
        type='AmpOptimWrapper', loss_scale='dynamic',
        optimizer=dict(type='SGD', lr=0.1, momentum=0.9)))
    assert type(wrapper) is CPUAmpOptimWrapper and wrapper.cast_dtype == torch.bfloat16
    assert any('AmpOptimWrapper -> CPUAmpOptimWrapper' in line for line in logs), logs
    plain = runner.build_optim_wrapper(dict(type='OptimWrapper',
                                            optimizer=dict(type='SGD', lr=0.1)))
    assert type(plain).__name__ == 'OptimWrapper'


@pytest.mark.slow
def test_mim_train_amp_tiny_retinanet_has_finite_losses(tmp_path, small_coco):
    """`mim train mmdet <tiny config> --amp` on CPU: bf16 autocast, no NaN/inf, it learns."""
    config = osp.join(REPO_ROOT, 'configs/retinanet/repghost_1_0x_tiny-coco.py')
    epochs = 6
    log = mim('train', 'mmdet', config, '--amp', '--work-dir', str(tmp_path / 'work'),
              '--cfg-options', *coco_data_options(small_coco), f'train_cfg.max_epochs={epochs}',
              f'train_cfg.val_interval={epochs}', f'default_hooks.checkpoint.interval={epochs}',
              'train_dataloader.batch_size=2', 'default_hooks.logger.interval=1',
              'param_scheduler.0.end=4', 'model.test_cfg.score_thr=0', cwd=str(tmp_path))
    assert 'AmpOptimWrapper -> CPUAmpOptimWrapper (torch.autocast on CPU, dtype bfloat16)' in log
    losses = [float(v) for v in re.findall(r'Epoch\(train\).*? loss: (\S+)', log)]
    assert len(losses) == epochs * 2  # 4 images, batch 2
    assert all(math.isfinite(v) for v in losses), losses
    assert sum(losses[-2:]) < sum(losses[:2]), losses
    checkpoint = load_checkpoint_file(str(tmp_path / 'work' / f'epoch_{epochs}.pth'))
    assert all(torch.isfinite(v).all() for v in checkpoint['state_dict'].values()
               if v.is_floating_point())
    assert 'loss_scaler' in checkpoint['optimizer']  # the wrapper's state, for --resume
    assert re.search(r'coco/bbox_mAP: [0-9.]+', log)
