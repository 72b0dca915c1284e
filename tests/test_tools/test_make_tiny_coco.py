import hashlib
import json

import cv2
import pytest
from mmdet.datasets import CocoDataset
from pycocotools.coco import COCO

from tests.conftest import load_tool

make_tiny_coco = load_tool('make_tiny_coco')


def digest(root):
    h = hashlib.sha256()
    for path in sorted(root.rglob('*')):
        if path.is_file():
            h.update(path.relative_to(root).as_posix().encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def test_layout_and_coco_validity(tmp_path):
    out = tmp_path / 'tiny'
    assert make_tiny_coco.main(['--out', str(out), '--train', '12', '--val', '5']) == 0
    assert sorted(p.name for p in out.iterdir()) == ['annotations', 'train2017', 'val2017']
    coco = COCO(str(out / 'annotations/instances_train2017.json'))
    assert len(coco.getImgIds()) == 12 and len(list((out / 'train2017').iterdir())) == 12
    assert len(coco.getCatIds()) == 80
    assert coco.loadCats(37)[0]['name'] == 'sports ball'
    used = {a['category_id'] for a in coco.loadAnns(coco.getAnnIds())}
    assert used <= {37, 38, 84} and len(used) >= 2
    for ann in coco.loadAnns(coco.getAnnIds()):
        img = coco.loadImgs(ann['image_id'])[0]
        x, y, w, h = ann['bbox']
        assert 0 <= x and 0 <= y and x + w <= img['width'] and y + h <= img['height']
        mask = coco.annToMask(ann)
        assert mask.shape == (img['height'], img['width'])
        assert abs(mask.sum() - ann['area']) / ann['area'] < 0.15  # polygon area ~ raster
        image = cv2.imread(str(out / 'train2017' / img['file_name']), cv2.IMREAD_UNCHANGED)
        assert image.shape[:2] == (img['height'], img['width'])
    val_ids = {a['id'] for a in json.loads(
        (out / 'annotations/instances_val2017.json').read_text())['annotations']}
    assert not val_ids & set(coco.getAnnIds())  # annotation ids unique across splits
    # mmdet's own CocoDataset reads it with the 80 COCO classes, unchanged
    dataset = CocoDataset(data_root=str(out), ann_file='annotations/instances_val2017.json',
                          data_prefix=dict(img='val2017/'), pipeline=[])
    assert len(dataset) >= 1 and dataset.metainfo['classes'][32] == 'sports ball'


def test_sides_not_multiple_of_32_and_some_grayscale(tmp_path):
    out = tmp_path / 'tiny'
    make_tiny_coco.main(['--out', str(out), '--train', '20', '--val', '1'])
    images = json.loads((out / 'annotations/instances_train2017.json').read_text())['images']
    assert any(i['width'] % 32 or i['height'] % 32 for i in images)
    channels = {cv2.imread(str(out / 'train2017' / i['file_name']),
                           cv2.IMREAD_UNCHANGED).ndim for i in images}
    assert channels == {2, 3}


def test_deterministic_and_keeps_existing_output(tmp_path, capsys):
    a, b = tmp_path / 'a', tmp_path / 'b'
    make_tiny_coco.main(['--out', str(a), '--train', '4', '--val', '2', '--seed', '3'])
    make_tiny_coco.main(['--out', str(b), '--train', '4', '--val', '2', '--seed', '3'])
    assert digest(a) == digest(b)
    before = digest(a)
    assert make_tiny_coco.main(['--out', str(a), '--train', '6', '--val', '2']) == 0
    assert 'keeping it' in capsys.readouterr().out and digest(a) == before
    assert make_tiny_coco.main(['--out', str(a), '--train', '6', '--val', '2', '--force']) == 0
    assert len(list((a / 'train2017').iterdir())) == 6
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith('.')] == []


def test_rejects_bad_counts(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        make_tiny_coco.main(['--out', str(tmp_path / 'x'), '--train', '0'])
    assert info.value.code == 2
    assert '--train 0 is out of range: use 1..100000' in capsys.readouterr().err
    assert not (tmp_path / 'x').exists()


def test_shapes_categories_same_images_own_three_classes(tmp_path):
    coco, shapes = tmp_path / 'coco', tmp_path / 'shapes'
    make_tiny_coco.main(['--out', str(coco), '--train', '6', '--val', '2'])
    assert make_tiny_coco.main(['--out', str(shapes), '--train', '6', '--val', '2',
                                '--categories', 'shapes']) == 0
    for split in ('train', 'val'):
        ours = json.loads((shapes / f'annotations/instances_{split}2017.json').read_text())
        ref = json.loads((coco / f'annotations/instances_{split}2017.json').read_text())
        assert [(c['id'], c['name']) for c in ours['categories']] == [
            (1, 'disc'), (2, 'triangle'), (3, 'rectangle')]
        assert ours['images'] == ref['images']
        coco_ids = {37: 1, 38: 2, 84: 3}  # sports ball, kite, book -> disc, triangle, rectangle
        assert [dict(a, category_id=coco_ids[a['category_id']]) for a in ref['annotations']] \
            == ours['annotations']
        assert sorted(p.read_bytes() for p in (shapes / f'{split}2017').iterdir()) == sorted(
            p.read_bytes() for p in (coco / f'{split}2017').iterdir())
    # mmdet's CocoDataset reads it with the three names as metainfo, every box kept
    dataset = CocoDataset(data_root=str(shapes), ann_file='annotations/instances_train2017.json',
                          data_prefix=dict(img='train2017/'), pipeline=[],
                          metainfo=dict(classes=make_tiny_coco.SHAPE_CLASSES))
    assert dataset.metainfo['classes'] == ('disc', 'triangle', 'rectangle')
    train = json.loads((shapes / 'annotations/instances_train2017.json').read_text())
    labels = [i['bbox_label'] for d in dataset for i in d['instances']]
    assert len(labels) == len(train['annotations'])
    assert set(labels) <= {0, 1, 2} and len(set(labels)) >= 2


def test_default_categories_are_coco_byte_for_byte(tmp_path):
    a, b = tmp_path / 'a', tmp_path / 'b'
    make_tiny_coco.main(['--out', str(a), '--train', '3', '--val', '1'])
    make_tiny_coco.main(['--out', str(b), '--train', '3', '--val', '1', '--categories', 'coco'])
    assert digest(a) == digest(b)


def test_rejects_unknown_categories(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        make_tiny_coco.main(['--out', str(tmp_path / 'x'), '--categories', 'voc'])
    assert info.value.code == 2
    assert "--categories: invalid choice: 'voc' (choose from 'coco', 'shapes')" in \
        capsys.readouterr().err
    assert not (tmp_path / 'x').exists()
