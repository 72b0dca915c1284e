"""End-to-end through mim: `mim train mmdet CONFIG` then `mim test mmdet ... --checkpoint`."""
import os.path as osp
import re

import pytest
from mmdet.registry import MODELS
from mmengine.config import Config

from mmrepghost.deploy import load_trained_model
from mmrepghost.utils import load_checkpoint_file
from tests.conftest import REPO_ROOT, coco_data_options, load_tool, mim

pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def tiny_coco(tmp_path_factory):
    root = tmp_path_factory.mktemp('data') / 'tiny_coco'
    load_tool('make_tiny_coco').main(['--out', str(root), '--train', '48', '--val', '12'])
    return str(root) + '/'


@pytest.fixture(scope='module')
def few_images(tmp_path_factory):
    """Four train and two val images: enough for the full-size configs to run a short job."""
    root = tmp_path_factory.mktemp('data') / 'few_images'
    load_tool('make_tiny_coco').main(['--out', str(root), '--train', '4', '--val', '2'])
    return str(root) + '/'


def test_mask_rcnn_mim_train_then_test_prints_bbox_and_segm_map(tmp_path, tiny_coco):
    config = osp.join(REPO_ROOT, 'configs/mask_rcnn/repghost_1_0x_tiny-coco.py')
    epochs = 8
    options = coco_data_options(tiny_coco) + [
        f'train_cfg.max_epochs={epochs}', f'train_cfg.val_interval={epochs}',
        f'default_hooks.checkpoint.interval={epochs}']
    # the last epoch ends with a validation of the training structure (val_interval=epochs)
    train_log = mim('train', 'mmdet', config, '--work-dir', str(tmp_path / 'work'),
                    '--cfg-options', *options, cwd=str(tmp_path))
    checkpoint = str(tmp_path / 'work' / f'epoch_{epochs}.pth')
    log = mim('test', 'mmdet', config, '--checkpoint', checkpoint, '--work-dir',
              str(tmp_path / 'test'), '--cfg-options', *options, cwd=str(tmp_path))
    assert 'Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all' in log  # pycocotools
    assert 'Evaluating bbox' in log and 'Evaluating segm' in log
    segm_map = float(re.findall(r'coco/segm_mAP: ([0-9.]+)', log)[-1])
    assert segm_map > 0
    # the shipped configs test the deployed network (RepGhostDeployHook) ...
    assert 'test model deployed (backbone), no re-parameterization branches left' in log
    # ... whose COCO mAPs equal the training structure's: the same weights and images,
    # validated at the end of training (no EMA in this config; `mim test` with the hook off,
    # `custom_hooks=[]`, is tested in tests/test_tools/test_mim_classification.py)
    assert 'validation model deployed' not in train_log  # RepGhostDeployHook(val=False)
    for metric in ('bbox_mAP', 'bbox_mAP_50', 'segm_mAP', 'segm_mAP_50'):
        deployed = float(re.findall(rf'coco/{metric}: ([0-9.]+)', log)[-1])
        trained = float(re.findall(rf'coco/{metric}: ([0-9.]+)', train_log)[-1])
        # the log rounds to 3 decimals: round away the float noise of the subtraction
        assert round(abs(deployed - trained), 6) <= 1e-3, (metric, deployed, trained)
    # and training left the deployed network beside the last checkpoint
    deploy_checkpoint = str(tmp_path / 'work' / f'epoch_{epochs}_deploy.pth')
    assert load_trained_model(str(tmp_path / 'work' / f'epoch_{epochs}_deploy.py'),
                              deploy_checkpoint).is_deploy


# no dataloader worker processes: two training processes already fill the two cores
IN_PROCESS_LOADING = [f'{loader}.{key}' for loader in (
    'train_dataloader', 'val_dataloader', 'test_dataloader') for key in (
        'num_workers=0', 'persistent_workers=False')]


def schedule_options(epochs):
    return [f'train_cfg.max_epochs={epochs}', f'train_cfg.val_interval={epochs}',
            f'default_hooks.checkpoint.interval={epochs}']


@pytest.mark.parametrize('config,metrics,score_thr', [
    ('retinanet/repghost_1_3x.py', ['bbox'], 'model.test_cfg.score_thr=0'),
    ('mask_rcnn/repghost_1_3x.py', ['bbox', 'segm'], 'model.test_cfg.rcnn.score_thr=0'),
])
def test_paper_configs_run_unchanged_but_for_data_and_schedule(tmp_path, few_images, config,
                                                               metrics, score_thr):
    """The Table 4 configs as shipped (1333x800, 256-ch FPN, SyncBN -> BN on one process),
    pointed at a few generated images, one epoch, no ImageNet weights here. Two iterations
    from scratch leave every score below the configs' 0.05 threshold (an empty result, no
    table), so the test-time threshold is 0."""
    config = osp.join(REPO_ROOT, 'configs', config)
    options = coco_data_options(few_images) + schedule_options(1) + IN_PROCESS_LOADING + [
        'model.backbone.init_cfg=None', 'train_dataloader.batch_size=2', score_thr]
    mim('train', 'mmdet', config, '--work-dir', str(tmp_path / 'work'), '--cfg-options',
        *options, cwd=str(tmp_path))
    log = mim('test', 'mmdet', config, '--checkpoint', str(tmp_path / 'work' / 'epoch_1.pth'),
              '--work-dir', str(tmp_path / 'test'), '--cfg-options', *options,
              cwd=str(tmp_path))
    for metric in metrics:
        assert f'Evaluating {metric}' in log
        assert re.search(rf'coco/{metric}_mAP: [0-9.]+', log)
    assert log.count('Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all') == len(metrics)


def test_two_process_gloo_ddp_training_checkpoint_tests_like_single_process(
        tmp_path, tiny_coco):
    """`mim train --launcher pytorch --gpus 2` on CPU: two gloo processes split the data, the
    rank-0 checkpoint has the single-process model's keys and `mim test` scores it."""
    config = osp.join(REPO_ROOT, 'configs/retinanet/repghost_1_0x_tiny-coco.py')
    epochs = 6  # enough for some detections above the score threshold: a non-empty table
    options = coco_data_options(tiny_coco) + schedule_options(epochs) + IN_PROCESS_LOADING + [
        'train_dataloader.batch_size=4', 'param_scheduler.0.end=10']
    work = tmp_path / 'work'
    train_log = mim('train', 'mmdet', config, '--launcher', 'pytorch', '--gpus', '2',
                    '--work-dir', str(work), '--cfg-options', *options, cwd=str(tmp_path))
    assert 'Distributed on CPU (gloo)' in train_log
    # RepGhostDeployHook(save_deploy=True) fused the DDP-wrapped, SyncBN-built model on rank 0
    assert load_trained_model(str(work / f'epoch_{epochs}_deploy.py'),
                              str(work / f'epoch_{epochs}_deploy.pth')).is_deploy
    assert 'Distributed training is not used' not in train_log
    checkpoint = load_checkpoint_file(str(work / f'epoch_{epochs}.pth'))
    cfg = Config.fromfile(config)
    cfg.model._scope_ = 'mmdet'
    single = MODELS.build(cfg.model).state_dict()
    ddp = checkpoint['state_dict']
    assert list(ddp) == list(single)  # no `module.` prefix, nothing missing or extra
    assert all(ddp[k].shape == single[k].shape for k in single)
    # 48 images, 2 processes x batch 4 -> 6 iterations per epoch (12 on one process)
    assert checkpoint['meta']['epoch'] == epochs and checkpoint['meta']['iter'] == 6 * epochs
    log = mim('test', 'mmdet', config, '--checkpoint', str(work / f'epoch_{epochs}.pth'),
              '--work-dir', str(tmp_path / 'test'), '--cfg-options', *options,
              cwd=str(tmp_path))
    assert 'Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all' in log
    assert re.search(r'coco/bbox_mAP: [0-9.]+', log)
