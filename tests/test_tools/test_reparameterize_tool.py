"""tools/reparameterize.py: train checkpoint -> deploy checkpoint + deploy config."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from mmrepghost.deploy import build_model, load_trained_model
from mmrepghost.deploy.onnx import RawOutputs
from tests.conftest import REPO_ROOT, calibrate_bn_, load_tool

DETECTOR = osp.join(REPO_ROOT, 'configs/retinanet/repghost_1_0x_tiny-coco.py')
CLASSIFIER = osp.join(REPO_ROOT, 'configs/_base_/models/repghostnet_1.0x.py')


def save_trained(config, path, input_shape):
    """A checkpoint of ``config`` in mmengine's layout, with trained-like BN statistics."""
    model = build_model(Config.fromfile(config))
    model.init_weights()
    wrapper = RawOutputs(model)
    calibrate_bn_(wrapper, input_shape)
    torch.save(dict(state_dict=model.state_dict(), meta=dict(epoch=3, dataset_meta=dict(
        classes=('a', 'b')))), path)
    return wrapper.eval()


@pytest.mark.parametrize('config,shape', [(DETECTOR, (2, 3, 96, 128)),
                                          (CLASSIFIER, (2, 3, 64, 64))])
def test_deploy_checkpoint_and_config_give_the_same_outputs(tmp_path, config, shape, capsys):
    reference = save_trained(config, str(tmp_path / 'train.pth'), shape)
    out = str(tmp_path / 'deploy.pth')
    assert load_tool('reparameterize').main([config, str(tmp_path / 'train.pth'), out]) == 0
    assert 'max abs diff' in capsys.readouterr().out
    deploy_cfg = Config.fromfile(str(tmp_path / 'deploy.py'))
    assert deploy_cfg.model.backbone.deploy is True
    assert deploy_cfg.model.backbone.init_cfg is None
    loaded = load_trained_model(str(tmp_path / 'deploy.py'), out)
    assert loaded.is_deploy and loaded.meta['deploy'] is True
    assert loaded.meta['dataset_meta'] == dict(classes=('a', 'b'))  # kept for mim test
    x = torch.randn(*shape)
    with torch.no_grad():
        for a, b in zip(reference(x), RawOutputs(loaded.model)(x)):
            assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)


@pytest.fixture(scope='module')
def trained_classifier(tmp_path_factory):
    root = tmp_path_factory.mktemp('cls')
    save_trained(CLASSIFIER, str(root / 'train.pth'), (2, 3, 64, 64))
    assert load_tool('reparameterize').main(
        [CLASSIFIER, str(root / 'train.pth'), str(root / 'deploy.pth')]) == 0
    return root


def test_deploy_checkpoint_again_is_a_clear_no_op(tmp_path, trained_classifier, capsys):
    out = str(tmp_path / 'again.pth')
    tool = load_tool('reparameterize')
    assert tool.main([CLASSIFIER, str(trained_classifier / 'deploy.pth'), out]) == 0
    assert 'is already a deploy checkpoint' in capsys.readouterr().out
    assert not osp.exists(out) and not osp.exists(str(tmp_path / 'again.py'))


def test_bad_inputs_are_refused_and_nothing_is_written(tmp_path, trained_classifier, capsys):
    tool = load_tool('reparameterize')
    train = str(trained_classifier / 'train.pth')
    out = str(tmp_path / 'out.pth')
    corrupt = tmp_path / 'corrupt.pth'
    corrupt.write_bytes(open(train, 'rb').read()[:1000])
    for checkpoint, code, message in [
        (str(tmp_path / 'missing.pth'), 2, 'checkpoint not found'),
        (str(corrupt), 2, 'corrupt.pth'),
        (train, 2, 'fits neither the train nor the deploy structure'),  # another model
    ]:
        config = DETECTOR if checkpoint == train else CLASSIFIER
        assert tool.main([config, checkpoint, out]) == code
        assert message in capsys.readouterr().err
        assert not osp.exists(out) and not osp.exists(str(tmp_path / 'out.py'))
    with pytest.raises(SystemExit):
        tool.main([CLASSIFIER, train, train])
    assert 'would overwrite CHECKPOINT' in capsys.readouterr().err
    existing = tmp_path / 'existing.pth'
    existing.write_bytes(b'keep')
    with pytest.raises(SystemExit):
        tool.main([CLASSIFIER, train, str(existing)])
    assert 'exists; pass --force' in capsys.readouterr().err
    assert existing.read_bytes() == b'keep'
    with pytest.raises(SystemExit):
        tool.main([CLASSIFIER, train, str(tmp_path / 'out.onnx')])
    assert "OUT must end with .pth, got" in capsys.readouterr().err
