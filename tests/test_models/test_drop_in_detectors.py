"""RepGhostNet as a drop-in backbone of other mmdet detectors, from their own configs."""
import os.path as osp

import pytest
import torch
from mmdet.registry import MODELS
from mmdet.testing import demo_mm_inputs
from mmengine.config import Config

from mmrepghost.models import RepGhostNet
from tests.conftest import REPO_ROOT

CONFIGS = [
    'faster_rcnn/repghost_1_0x.py',
    'fcos/repghost_1_0x.py',
    'atss/repghost_1_0x.py',
    'retinanet/repghost_1_3x.py',
    'mask_rcnn/repghost_1_3x.py',
]


@pytest.mark.parametrize('config', CONFIGS)
def test_detector_trains_and_predicts_with_repghostnet(config):
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs', config))
    assert set(cfg.model.backbone) >= {'type', 'arch', 'out_indices'}
    assert 'depth' not in cfg.model.backbone  # the ResNet settings are gone
    cfg.model.backbone.init_cfg = None  # no ImageNet weights here
    cfg.model.backbone.norm_cfg = dict(type='BN')  # SyncBN needs a process group to train
    cfg.model._scope_ = 'mmdet'
    model = MODELS.build(cfg.model)
    model.init_weights()
    assert isinstance(model.backbone, RepGhostNet)
    with_mask = 'mask_rcnn' in config
    packed = demo_mm_inputs(2, [[3, 128, 160], [3, 96, 96]], num_items=[2, 1],
                            num_classes=80, with_mask=with_mask)
    data = model.data_preprocessor(packed, True)
    losses = model(**data, mode='loss')
    total = sum(v.sum() if isinstance(v, torch.Tensor) else sum(v) for k, v in losses.items()
                if 'loss' in k)
    assert torch.isfinite(total)
    total.backward()
    assert model.backbone.conv_stem.weight.grad is not None
    model.eval()
    with torch.no_grad():
        results = model(**model.data_preprocessor(packed, False), mode='predict')
    assert len(results) == 2 and hasattr(results[0], 'pred_instances')
