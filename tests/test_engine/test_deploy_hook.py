"""RepGhostDeployHook inside mmengine's Runner: test, validate and save the deployed network."""
import copy
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner
from torch.nn.modules.batchnorm import _BatchNorm

from mmrepghost.deploy import load_trained_model
from mmrepghost.engine import RepGhostDeployHook
from tests.conftest import REPO_ROOT

CONFIG = osp.join(REPO_ROOT, 'configs/retinanet/repghost_1_0x_tiny-coco.py')


def tiny_cfg(data_root, work_dir, epochs=1):
    cfg = Config.fromfile(CONFIG)
    ann = data_root + 'annotations/instances_val2017.json'
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = data_root
        cfg[loader].num_workers = 0
        cfg[loader].persistent_workers = False
        cfg[loader].batch_size = 2
    cfg.val_evaluator.ann_file = cfg.test_evaluator.ann_file = ann
    cfg.train_cfg.max_epochs = cfg.train_cfg.val_interval = epochs
    cfg.default_hooks.checkpoint.interval = epochs
    cfg.model.test_cfg.score_thr = 0  # a barely trained model: score every anchor
    cfg.randomness = dict(seed=0, deterministic=True)
    cfg.work_dir = str(work_dir)
    cfg.launcher = 'none'
    cfg.custom_hooks = []  # the shipped configs list the hook: each test sets its own
    return cfg


def unwrap(runner):
    return runner.model.module if hasattr(runner.model, 'module') else runner.model


class RecordValModel(Hook):
    """Remember whether the model that validation runs is deployed, and the training one."""
    priority = 'LOWEST'

    def __init__(self):
        self.val_backbone_deploy = []

    def before_val_iter(self, runner, batch_idx, data_batch=None):
        self.val_backbone_deploy.append(unwrap(runner).backbone.deploy)


def test_shipped_configs_test_the_deployed_network_and_save_it():
    assert Config.fromfile(CONFIG).custom_hooks == [
        dict(type='RepGhostDeployHook', test=True, save_deploy=True)]


def test_hook_validates_with_arguments():
    with pytest.raises(TypeError, match="RepGhostDeployHook val must be True or False, got 'y'"):
        RepGhostDeployHook(val='y')


@pytest.fixture(scope='module')
def trained(tmp_path_factory, small_coco):
    """One epoch of training; the checkpoint every test below starts from."""
    work = tmp_path_factory.mktemp('trained')
    runner = Runner.from_cfg(tiny_cfg(small_coco, work))
    runner.train()
    return str(work / 'epoch_1.pth')


def test_test_with_hook_gives_same_coco_map_and_no_branches_left(tmp_path, small_coco,
                                                                 trained):
    metrics = {}
    for with_hook in (False, True):
        cfg = tiny_cfg(small_coco, tmp_path / str(with_hook))
        cfg.load_from = trained
        if with_hook:
            cfg.custom_hooks = [dict(type='RepGhostDeployHook')]
        runner = Runner.from_cfg(cfg)
        metrics[with_hook] = runner.test()
        backbone = unwrap(runner).backbone
        assert backbone.deploy is with_hook
        bns = [m for m in backbone.modules() if isinstance(m, _BatchNorm)]
        assert (len(bns) == 0) is with_hook  # every BN folded, every branch merged
    assert metrics[True]['coco/bbox_mAP'] == pytest.approx(metrics[False]['coco/bbox_mAP'],
                                                           abs=1e-3)
    assert metrics[True]['coco/bbox_mAP_50'] == pytest.approx(
        metrics[False]['coco/bbox_mAP_50'], abs=1e-3)


def test_val_on_a_deployed_copy_leaves_training_unchanged(tmp_path, small_coco):
    results = {}
    for with_hook in (False, True):
        cfg = tiny_cfg(small_coco, tmp_path / str(with_hook), epochs=2)
        cfg.train_cfg.val_interval = 1
        recorder = RecordValModel()
        if with_hook:
            cfg.custom_hooks = [dict(type='RepGhostDeployHook', val=True)]
        runner = Runner.from_cfg(cfg)
        runner.register_hook(recorder)
        runner.train()
        losses = runner.message_hub.get_scalar('train/loss').data[0]
        state = copy.deepcopy(unwrap(runner).state_dict())
        results[with_hook] = (losses, state, recorder.val_backbone_deploy,
                              unwrap(runner).backbone.deploy)
    losses, state, val_deploy, still_deploy = results[True]
    ref_losses, ref_state, ref_val_deploy, _ = results[False]
    assert losses.tolist() == ref_losses.tolist()  # the same loss curve, bit for bit
    assert state.keys() == ref_state.keys()
    assert all(torch.equal(state[k], ref_state[k]) for k in state)  # same final weights
    assert val_deploy and all(val_deploy)  # validation ran the deployed network
    assert ref_val_deploy and not any(ref_val_deploy)
    assert still_deploy is False  # training continued on the multi-branch model


def test_save_deploy_writes_checkpoint_and_config_next_to_last(tmp_path, small_coco):
    cfg = tiny_cfg(small_coco, tmp_path)
    cfg.custom_hooks = [dict(type='RepGhostDeployHook', save_deploy=True)]
    runner = Runner.from_cfg(cfg)
    runner.train()
    checkpoint, config = tmp_path / 'epoch_1_deploy.pth', tmp_path / 'epoch_1_deploy.py'
    assert checkpoint.is_file() and config.is_file()
    loaded = load_trained_model(str(config), str(checkpoint))
    assert loaded.is_deploy and loaded.model.backbone.deploy
    reference = load_trained_model(CONFIG, str(tmp_path / 'epoch_1.pth')).model
    x = torch.randn(1, 3, 128, 160)
    with torch.no_grad():
        ours = loaded.model(x, mode='tensor')
        ref = reference(x, mode='tensor')
    for a, b in zip(sum(ours, []), sum(ref, [])):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)
