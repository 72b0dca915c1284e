"""A classifier's weights initialise detection backbones, with and without the prefix."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from mmrepghost.deploy import build_model
from tests.conftest import REPO_ROOT

CLASSIFIER = osp.join(REPO_ROOT, 'configs/cls/repghost_1_0x.py')
DETECTOR = osp.join(REPO_ROOT, 'configs/retinanet/repghost_1_0x_tiny-coco.py')


@pytest.fixture(scope='module')
def classifier(tmp_path_factory):
    cfg = Config.fromfile(CLASSIFIER)
    model = build_model(cfg)
    model.init_weights()
    with torch.no_grad():  # distinct values everywhere, BN statistics included
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.uniform_(-1, 1)
    root = tmp_path_factory.mktemp('ckpt')
    # as mmengine's CheckpointHook writes it, and a backbone-only file
    # (tools/convert_weights.py --layout backbone writes the same keys)
    torch.save(dict(state_dict=model.state_dict(), meta=dict(epoch=300)), root / 'full.pth')
    torch.save(dict(state_dict=model.backbone.state_dict()), root / 'backbone.pth')
    return model, root


@pytest.mark.parametrize('file,prefix', [('full.pth', 'backbone.'), ('backbone.pth', None)])
def test_detection_backbone_gets_the_classifier_backbone_weights(classifier, file, prefix):
    model, root = classifier
    cfg = Config.fromfile(DETECTOR)
    init = dict(type='Pretrained', checkpoint=str(root / file))
    if prefix:
        init['prefix'] = prefix
    cfg.model.backbone.init_cfg = init
    detector = build_model(cfg)
    detector.init_weights()
    ours = detector.backbone.state_dict()
    theirs = model.backbone.state_dict()
    # the detector builds stages 0-3 only (out_indices 1-3): every one of its tensors loaded
    assert set(ours) < set(theirs)
    for key, tensor in ours.items():
        assert torch.equal(tensor, theirs[key]), key


@pytest.mark.parametrize('file,prefix,message', [
    ('backbone.pth', 'backbone.', "no key of .* starts with prefix='backbone.'"),
    ('full.pth', None, "add prefix='backbone.'"),
    ('other_width.pth', 'backbone.', r'of another shape .*another width'),
])
def test_wrong_prefix_or_width_is_an_error_not_a_silent_random_init(classifier, file, prefix,
                                                                    message):
    model, root = classifier
    if file == 'other_width.pth':
        cfg = Config.fromfile(CLASSIFIER.replace('1_0x', '1_3x'))
        torch.save(dict(state_dict=build_model(cfg).state_dict()), root / file)
    cfg = Config.fromfile(DETECTOR)
    cfg.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=str(root / file))
    if prefix:
        cfg.model.backbone.init_cfg['prefix'] = prefix
    detector = build_model(cfg)
    with pytest.raises(ValueError, match=message):
        detector.init_weights()
