"""tools/show_predictions.py: mmdet's DetInferencer drawings tiled into one PNG."""
import os.path as osp
import re

import cv2
import pytest
import torch
from mmdet.datasets import CocoDataset
from mmdet.registry import MODELS
from mmengine.config import Config

from tests.conftest import REPO_ROOT, load_tool

CONFIG = osp.join(REPO_ROOT, 'configs/retinanet/repghost_1_0x_tiny-coco.py')


@pytest.fixture(scope='module')
def checkpoint_and_images(tmp_path_factory):
    root = tmp_path_factory.mktemp('show')
    load_tool('make_tiny_coco').main(['--out', str(root / 'data'), '--train', '1',
                                      '--val', '3'])
    cfg = Config.fromfile(CONFIG)
    cfg.model._scope_ = 'mmdet'
    model = MODELS.build(cfg.model)
    model.init_weights()
    with torch.no_grad():  # a confident bias: every anchor predicts class 0 above 0.3
        model.bbox_head.retina_cls.bias.fill_(3.0)
    path = str(root / 'model.pth')
    # what mmengine's CheckpointHook stores: the 80 COCO classes and their palette
    torch.save(dict(state_dict=model.state_dict(), meta=dict(dataset_meta=CocoDataset.METAINFO)),
               path)
    return path, str(root / 'data' / 'val2017')


def test_draws_predictions_of_a_few_images_into_one_png(tmp_path, checkpoint_and_images,
                                                        capsys):
    checkpoint, images = checkpoint_and_images
    out = str(tmp_path / 'pred.png')
    tool = load_tool('show_predictions')
    assert tool.main([CONFIG, checkpoint, '--images', images, '--num', '2', '--out', out]) == 0
    drawn = cv2.imread(out)
    sources = [cv2.imread(p) for p in tool.list_images([images], 2)]
    assert drawn.shape[0] == max(s.shape[0] for s in sources)
    assert drawn.shape[1] == sum(s.shape[1] for s in sources) + 4  # one 4-px gap
    # boxes were drawn: the image differs from the plain inputs side by side
    plain = tool.tile([cv2.cvtColor(s, cv2.COLOR_BGR2RGB) for s in sources])
    assert (cv2.cvtColor(drawn, cv2.COLOR_BGR2RGB).astype(int) - plain).any()
    assert '2 images' in capsys.readouterr().out


def test_refuses_to_replace_and_bad_arguments(tmp_path, checkpoint_and_images, capsys):
    checkpoint, images = checkpoint_and_images
    tool = load_tool('show_predictions')
    out = tmp_path / 'old.png'
    out.write_bytes(b'keep me')
    for argv, message in [
        (['--out', str(out)], 'exists; pass --force'),
        (['--out', str(tmp_path / 'x.jpg')], "--out must be a .png file, got"),
        (['--out', str(tmp_path / 'x.png'), '--num', '0'], '--num must be in [1, 16], got 0'),
        (['--out', str(tmp_path / 'x.png'), '--score-thr', '2'],
         '--score-thr must be in [0, 1], got 2.0'),
    ]:
        with pytest.raises(SystemExit):
            tool.main([CONFIG, checkpoint, '--images', images, *argv])
        assert message in capsys.readouterr().err
    assert out.read_bytes() == b'keep me'
    assert tool.main([CONFIG, checkpoint, '--images', str(tmp_path / 'nope'), '--out',
                      str(tmp_path / 'y.png')]) == 2
    assert re.search(r"^error: --images '.*nope' is neither a folder nor a file",
                     capsys.readouterr().err, re.M)
    assert not (tmp_path / 'y.png').exists()
