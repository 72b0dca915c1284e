"""RepGhostRunner: checked checkpoint loading that still allows fine-tuning another head."""
import torch
from mmengine.config import Config
from mmengine.registry import RUNNERS

from mmrepghost.deploy import build_model
from mmrepghost.engine import RepGhostRunner
from mmrepghost.models import repghostnet_classifier_cfg


def classifier(num_classes):
    return build_model(Config(dict(model=repghostnet_classifier_cfg('1.0x',
                                                                    num_classes=num_classes))))


def test_former_name_builds_the_same_runner():
    assert RUNNERS.get('CPUCompatibleRunner') is RUNNERS.get('RepGhostRunner') is RepGhostRunner


def test_checkpoint_with_another_head_loads_its_whole_backbone(tmp_path):
    """ImageNet classifier (1000 classes) -> an 8-class model: the backbone must fit, the head
    may differ (mmengine skips the mismatched head tensors with a warning)."""
    source = classifier(1000)
    torch.save({'state_dict': source.state_dict(), 'meta': {}}, tmp_path / 'in1k.pth')
    runner = RepGhostRunner(model=classifier(8), work_dir=str(tmp_path / 'work'))
    runner.load_checkpoint(str(tmp_path / 'in1k.pth'))
    loaded = runner.model.state_dict()
    for key, value in source.state_dict().items():
        if key.startswith('backbone.'):
            assert torch.equal(loaded[key], value), key
    assert loaded['head.layers.1.fc.weight'].shape[0] == 8
