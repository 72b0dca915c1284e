"""configs/cls: the paper's ImageNet recipe at all eight widths, resolved and run."""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from mmrepghost.deploy import build_model, load_trained_model
from mmrepghost.models import ARCH_WIDTHS, RepGhostNet
from mmrepghost.utils import load_checkpoint_file
from tests.conftest import REPO_ROOT, load_tool

CLS = osp.join(REPO_ROOT, 'configs', 'cls')
WIDTHS = list(ARCH_WIDTHS)
RAND_AUGMENT_WIDTHS = ('1.3x', '1.5x', '2.0x')  # official args.yaml: aa rand-m9-mstd0.5
TINY_CLASSES = 8


def config_of(width):
    return osp.join(CLS, f'repghost_{width.replace(".", "_")}.py')


def test_every_width_has_a_config_and_a_deploy_config():
    shipped = sorted(glob.glob(osp.join(CLS, 'repghost_*_*x.py')))
    assert shipped == sorted(config_of(w) for w in WIDTHS)
    for width in WIDTHS:
        deploy = Config.fromfile(config_of(width)[:-len('.py')] + '_deploy.py')
        assert deploy.model.backbone.deploy is True and deploy.model.backbone.arch == width


def transforms(pipeline):
    return {t['type']: t for t in pipeline}


@pytest.mark.parametrize('width', WIDTHS)
def test_resolved_config_is_the_official_recipe(width):
    cfg = Config.fromfile(config_of(width))
    # model: the width, its real final channels, dropout 0.2, label smoothing 0.1
    assert cfg.model.backbone.arch == width
    assert cfg.model.head.in_channels == RepGhostNet(width, init_cfg=None).out_channels[-1]
    assert cfg.model.head.dropout_rate == 0.2 and cfg.model.head.mid_channels == [1280]
    assert cfg.model.head.loss == dict(type='LabelSmoothLoss', label_smooth_val=0.1,
                                       mode='original', loss_weight=1.0)
    assert cfg.model.head.topk == (1, 5) and cfg.val_evaluator.topk == (1, 5)
    # optimizer: SGD 0.6 for 1024 images, momentum 0.9, wd 1e-5 on weights only
    assert cfg.optim_wrapper.optimizer == dict(type='SGD', lr=0.6, momentum=0.9,
                                               weight_decay=1e-5, nesterov=False)
    assert cfg.optim_wrapper.paramwise_cfg == dict(norm_decay_mult=0.0, bias_decay_mult=0.0)
    assert cfg.auto_scale_lr.base_batch_size == 1024
    assert cfg.train_dataloader.batch_size == 128  # x 8 GPUs
    # schedule: 5 linear warm-up epochs from 1e-4, cosine to 1e-5, 300 epochs
    warmup, cosine = cfg.param_scheduler
    assert warmup.type == 'LinearLR' and warmup.by_epoch and (warmup.begin, warmup.end) == (0, 5)
    assert warmup.start_factor * 0.6 == pytest.approx(1e-4) and warmup.convert_to_iter_based
    assert cosine.type == 'CosineAnnealingLR' and (cosine.begin, cosine.end) == (5, 300)
    assert cosine.eta_min == 1e-5 and cfg.train_cfg.max_epochs == 300
    # EMA 0.9999 per iteration (mmengine momentum = 1 - decay) over weights and BN buffers
    ema = [h for h in cfg.custom_hooks if h.type == 'EMAHook']
    assert len(ema) == 1 and ema[0].momentum == pytest.approx(1e-4) and ema[0].update_buffers
    assert any(h.type == 'RepGhostDeployHook' for h in cfg.custom_hooks)
    # augmentation: crop 0.08-1, flip, erasing 0.2 per-pixel, jitter or RandAugment by width
    train = transforms(cfg.train_dataloader.dataset.pipeline)
    assert train['RandomResizedCrop'].crop_ratio_range == (0.08, 1.0)
    assert train['RandomResizedCrop'].scale == 224
    assert train['RandomFlip'].prob == 0.5
    assert train['RandomErasing'].erase_prob == 0.2 and train['RandomErasing'].mode == 'rand'
    if width in RAND_AUGMENT_WIDTHS:
        assert 'ColorJitter' not in train
        assert train['RandAugment'].magnitude_level == 9
        assert train['RandAugment'].magnitude_std == 0.5
        assert train['RandAugment'].num_policies == 2
    else:
        assert 'RandAugment' not in train and 'AutoAugment' not in train
        assert (train['ColorJitter'].brightness, train['ColorJitter'].contrast,
                train['ColorJitter'].saturation) == (0.4, 0.4, 0.4)
    test = transforms(cfg.test_dataloader.dataset.pipeline)
    assert test['ResizeEdge'].scale == 256 and test['CenterCrop'].crop_size == 224


@pytest.fixture(scope='module')
def tiny_imagenet(tmp_path_factory):
    root = tmp_path_factory.mktemp('data') / 'tiny_imagenet'
    load_tool('make_tiny_imagenet').main(['--out', str(root), '--train', '2', '--val', '1'])
    return str(root)


def tiny_run_cfg(config, data_root, work_dir):
    """``config`` as shipped, pointed at the tiny set: one iteration of batch 2, no val."""
    tiny = Config.fromfile(osp.join(CLS, 'repghost_1_0x_tiny-imagenet.py'))
    cfg = Config.fromfile(config)
    cfg.model.head.num_classes = cfg.data_preprocessor.num_classes = TINY_CLASSES
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = data_root
        cfg[loader].dataset.metainfo = dict(classes=tiny.classes)
        cfg[loader].batch_size = 2
        cfg[loader].num_workers = 0
    cfg.train_dataloader.dataset.indices = 2
    cfg.train_cfg.max_epochs = 1
    cfg.train_cfg.val_interval = 2  # no validation
    cfg.work_dir = str(work_dir)
    return cfg


@pytest.mark.parametrize('width', WIDTHS)
def test_every_width_trains_one_iteration_and_saves_its_deployed_network(
        width, tiny_imagenet, tmp_path):
    cfg = tiny_run_cfg(config_of(width), tiny_imagenet, tmp_path)
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 1
    assert 0 < runner.message_hub.get_scalar('train/loss').current() < 10
    # RepGhostDeployHook(save_deploy=True) fused the EMA weights, which epoch_1.pth holds too
    deployed = load_trained_model(str(tmp_path / 'epoch_1_deploy.py'),
                                  str(tmp_path / 'epoch_1_deploy.pth'))
    assert deployed.is_deploy and deployed.model.backbone.widen_factor == ARCH_WIDTHS[width]
    cfg.model.backbone.init_cfg = None
    reference = build_model(cfg).eval()
    reference.load_state_dict(load_checkpoint_file(str(tmp_path / 'epoch_1.pth'))['state_dict'])
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = reference(x, mode='tensor')
        got = deployed.model(x, mode='tensor')
    assert torch.allclose(got, expected, atol=1e-4 * max(1.0, expected.abs().max().item()))


def test_image_classification_inferencer_runs_our_config_and_checkpoint(
        tiny_imagenet, tmp_path):
    """The README's inference snippet: mmpretrain's inferencer, our config + a checkpoint."""
    from mmpretrain.apis import ImageClassificationInferencer
    config = osp.join(CLS, 'repghost_1_0x_tiny-imagenet.py')
    cfg = Config.fromfile(config)
    model = build_model(cfg)
    model.init_weights()
    with torch.no_grad():  # make class 5 the certain answer
        model.head.layers[-1].fc.bias.copy_(torch.arange(TINY_CLASSES) == 5).mul_(50)
    checkpoint = str(tmp_path / 'cls.pth')
    torch.save(dict(state_dict=model.state_dict(),
                    meta=dict(dataset_meta=dict(classes=cfg.classes))), checkpoint)
    inferencer = ImageClassificationInferencer(model=config, pretrained=checkpoint,
                                               device='cpu')
    image = osp.join(tiny_imagenet, 'val', 'val_00000.JPEG')
    [result] = inferencer(image)
    assert result['pred_label'] == 5 and result['pred_class'] == cfg.classes[5]
    assert result['pred_score'] > 0.99
