"""tools/make_tiny_imagenet.py: mmpretrain's ImageNet layout, deterministic, atomic."""
import filecmp
import os

import pytest
from mmpretrain.datasets import ImageNet

from tests.conftest import load_tool


def test_layout_is_read_by_mmpretrain_imagenet(tmp_path):
    tool = load_tool('make_tiny_imagenet')
    root = tmp_path / 'set'
    assert tool.main(['--out', str(root), '--train', '3', '--val', '2']) == 0
    classes = (root / 'meta' / 'classes.txt').read_text().split()
    assert tuple(classes) == tool.CLASSES and len(classes) == 8
    for split, per_class in (('train', 3), ('val', 2)):
        dataset = ImageNet(data_root=str(root), split=split, metainfo=dict(classes=classes))
        labels = [dataset.get_data_info(i)['gt_label'] for i in range(len(dataset))]
        assert sorted(labels) == sorted(list(range(8)) * per_class)
        assert all(os.path.isfile(dataset.get_data_info(i)['img_path'])
                   for i in range(len(dataset)))
    # val file names do not give the class away
    assert all(name.startswith('val_') for name in os.listdir(root / 'val'))


def test_deterministic_and_keeps_existing_output(tmp_path, capsys):
    tool = load_tool('make_tiny_imagenet')
    for name in ('a', 'b'):
        tool.main(['--out', str(tmp_path / name), '--train', '2', '--val', '1'])
    compared = filecmp.dircmp(tmp_path / 'a' / 'val', tmp_path / 'b' / 'val')
    assert compared.left_list and not compared.diff_files
    assert filecmp.cmp(tmp_path / 'a' / 'meta' / 'val.txt', tmp_path / 'b' / 'meta' / 'val.txt',
                       shallow=False)
    (tmp_path / 'a' / 'mine.txt').write_text('keep')
    assert tool.main(['--out', str(tmp_path / 'a')]) == 0
    assert 'keeping it' in capsys.readouterr().out
    assert (tmp_path / 'a' / 'mine.txt').read_text() == 'keep'


@pytest.mark.parametrize('argv,message', [
    (['--train', '0'], '--train 0 is out of range: use 1..10000'),
    (['--val', '20000'], '--val 20000 is out of range: use 1..10000'),
])
def test_rejects_bad_counts(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit):
        load_tool('make_tiny_imagenet').main(['--out', str(tmp_path / 'x'), *argv])
    assert message in capsys.readouterr().err
    assert not (tmp_path / 'x').exists()
