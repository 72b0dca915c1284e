"""A neck that does not fit the RepGhostNet outputs fails where mmrepghost builds the
detector (the tools' builder and RepGhostRunner), and nowhere implicitly."""
import os.path as osp
import re

import pytest
from mmengine.config import Config
from mmengine.registry import RUNNERS
from torch import nn

from mmrepghost.deploy import build_model
from mmrepghost.models import RepGhostNet, check_neck_in_channels
from tests.conftest import REPO_ROOT


def build_detector(config, **model_options):
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs', config))
    cfg.model.backbone.init_cfg = None
    cfg.merge_from_dict({f'model.{k}': v for k, v in model_options.items()})
    cfg.model._scope_ = 'mmdet'
    return build_model(cfg)


def test_shipped_tiny_configs_build_with_matching_channels():
    model = build_detector('retinanet/repghost_1_0x_tiny-coco.py')
    assert list(model.neck.in_channels) == list(model.backbone.out_channels) == [40, 80, 160]


@pytest.mark.parametrize('config,options,real', [
    # 1.3x channels left in the neck after switching the backbone to 1.0x
    ('retinanet/repghost_1_0x_tiny-coco.py', {'neck.in_channels': [52, 104, 208]},
     [40, 80, 160]),
    # out_indices changed to four stages, neck still has three
    ('retinanet/repghost_1_0x_tiny-coco.py', {'backbone.out_indices': (0, 1, 2, 3)},
     [24, 40, 80, 160]),
    # a two-stage detector: Mask R-CNN with 1.3x out_indices but 1.5x channels
    ('mask_rcnn/repghost_1_3x.py', {'neck.in_channels': [36, 60, 120, 240]},
     [32, 52, 104, 208]),
])
def test_mismatched_neck_fails_at_build_with_real_channels(config, options, real):
    with pytest.raises(ValueError) as error:
        build_detector(config, **options)
    message = str(error.value)
    assert f'outputs channels {real}' in message
    assert f'Set model.neck.in_channels={real}' in message
    assert 'FPN in_channels=' in message
    # all five stages of the width are listed, to pick other out_indices
    assert re.search(r'stages 0: \d+, 1: \d+, 2: \d+, 3: \d+, 4: \d+', message)


class ListNeck(nn.Module):
    def __init__(self, in_channels):
        super().__init__()
        self.in_channels = in_channels


class Detector(nn.Module):
    def __init__(self, backbone, neck):
        super().__init__()
        self.backbone = backbone
        self.neck = neck


@pytest.mark.parametrize('in_channels,ok', [
    ([40, 80, 160], True),
    ([160, 80, 40], True),  # deepest level first, as YOLOv3's neck takes them
    (160, True),  # a single-input neck consumes the last output
    ([40, 80], False),
    (80, False),
    ('not channels', True),  # nothing comparable: left to the neck itself
])
def test_rule_for_list_reversed_and_single_input_necks(in_channels, ok):
    detector = Detector(RepGhostNet(arch='1.0x', out_indices=(1, 2, 3)), ListNeck(in_channels))
    if ok:
        check_neck_in_channels(detector)
    else:
        with pytest.raises(ValueError, match=re.escape(f'in_channels={in_channels!r}')):
            check_neck_in_channels(detector)


def test_only_a_neck_next_to_a_repghostnet_is_checked():
    parent = nn.Module()
    parent.backbone = nn.Conv2d(3, 8, 3)
    parent.neck = ListNeck([1, 2, 3])  # not a RepGhostNet backbone: not ours to judge
    check_neck_in_channels(parent)
    other = nn.Module()
    other.backbone = RepGhostNet(arch='0.5x', out_indices=(3, ))
    other.head = ListNeck([999])  # only the attribute named `neck` is a neck
    check_neck_in_channels(other)
    check_neck_in_channels(nn.Conv2d(3, 8, 3))  # no backbone, no neck: nothing to check


def test_assigning_a_neck_has_no_hidden_check():
    """No process-wide module hook: only the explicit call raises."""
    parent = nn.Module()
    parent.backbone = RepGhostNet(arch='0.5x', out_indices=(3, ))
    parent.neck = ListNeck([999])
    with pytest.raises(ValueError, match=r'ListNeck in_channels=\[999\] do not match'):
        check_neck_in_channels(parent)


def tiny_retinanet(neck_in_channels):
    return dict(
        type='RetinaNet',
        data_preprocessor=dict(type='DetDataPreprocessor', mean=[0, 0, 0], std=[1, 1, 1]),
        backbone=dict(type='RepGhostNet', arch='0.5x', out_indices=(1, 2, 3)),
        neck=dict(type='FPN', in_channels=neck_in_channels, out_channels=16, num_outs=3),
        bbox_head=dict(
            type='RetinaHead', num_classes=2, in_channels=16, feat_channels=16, stacked_convs=1,
            anchor_generator=dict(type='AnchorGenerator', octave_base_scale=4,
                                  scales_per_octave=1, ratios=[1.0], strides=[8, 16, 32]),
            bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[.0, .0, .0, .0],
                            target_stds=[1.0, 1.0, 1.0, 1.0]),
            loss_cls=dict(type='FocalLoss', use_sigmoid=True, loss_weight=1.0),
            loss_bbox=dict(type='L1Loss', loss_weight=1.0)))


def runner_cfg(tmp_path, neck_in_channels):
    return Config(dict(runner_type='RepGhostRunner', default_scope='mmdet',
                       model=tiny_retinanet(neck_in_channels), work_dir=str(tmp_path),
                       experiment_name=f'neck_check_{tmp_path.name}', launcher='none',
                       env_cfg=dict(dist_cfg=dict(backend='gloo'))))


def test_repghost_runner_checks_the_neck_when_it_builds_the_model(tmp_path):
    runner = RUNNERS.build(runner_cfg(tmp_path / 'ok', [20, 40, 80]))
    assert type(runner).__name__ == 'RepGhostRunner'
    assert list(runner.model.neck.in_channels) == [20, 40, 80]
    with pytest.raises(ValueError, match=re.escape(
            'FPN in_channels=[24, 48, 96] do not match the backbone') + '.*' + re.escape(
                'Set model.neck.in_channels=[20, 40, 80]')):
        RUNNERS.build(runner_cfg(tmp_path / 'wrong', [24, 48, 96]))
