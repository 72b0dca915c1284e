"""Drawing results, and where the drawings go (never over an input, --force to replace)."""
import os

import cv2
import numpy as np
import pytest

from mmrepghost_runtime import files
from mmrepghost_runtime.draw import class_color, draw_classification, draw_detections
from mmrepghost_runtime.outputs import OutputError, plan_outputs, write_image
from mmrepghost_runtime.postprocess import Detections, classify


def _detections(masks=None):
    return Detections(bboxes=np.array([[20, 30, 120, 90], [150, 10, 190, 70]], np.float32),
                      scores=np.array([0.93, 0.41], np.float32), labels=np.array([0, 2]),
                      class_names=('disc', 'rectangle'), masks=masks, image_shape=(100, 200))


def test_draw_detections_boxes_labels_and_masks():
    image = np.full((100, 200, 3), 128, np.uint8)
    drawn = draw_detections(image, _detections())
    assert np.all(image == 128)  # the input is not modified
    assert tuple(drawn[60, 20]) == class_color(0)  # left edge of box 0
    assert tuple(drawn[40, 190]) == class_color(2)  # right edge of box 1
    assert np.all(drawn[60, 60] == 128)  # inside box 0, no mask: untouched
    # the label text sits on a filled box in the class color at the box's top-left corner
    assert (drawn[30:40, 21:60] == class_color(0)).all(axis=2).mean() > 0.3
    masks = np.zeros((2, 100, 200), bool)
    masks[0, 40:80, 40:100] = True
    drawn = draw_detections(image, _detections(masks), alpha=0.5)
    expected = np.round(128 * 0.5 + np.array(class_color(0)) * 0.5)
    assert np.array_equal(drawn[60, 60], expected)  # translucent mask
    assert np.all(drawn[95, 5] == 128)
    assert class_color(0) != class_color(1) != class_color(2)


def test_draw_classification_top5():
    result = classify(np.array([0.1, 0.6, 0.3], np.float32), ('a', 'b', 'c'))
    image = np.zeros((80, 120, 3), np.uint8)
    drawn = draw_classification(image, result)
    changed = np.any(drawn != 0, axis=2)
    rows = np.nonzero(changed.any(axis=1))[0]
    assert rows.min() <= 4 and rows.max() < 60  # three lines of text at the top left
    assert not changed[70:].any() and np.all(image == 0)


def test_plan_outputs(tmp_path):
    inputs = tmp_path / 'in'
    inputs.mkdir()
    a, b, c = inputs / 'a.jpg', inputs / 'b.PNG', inputs / 'c.bmp'
    for path in (a, b, c):
        path.write_bytes(b'x')
    out = tmp_path / 'out'
    assert plan_outputs([a, b, c], out) == [f'{out}/a.jpg', f'{out}/b.png', f'{out}/c.jpg']
    # the inputs' own folder: a.jpg is an input, so its drawing is a_pred.jpg
    assert plan_outputs([a, b, c], inputs) == [f'{inputs}/a_pred.jpg', f'{inputs}/b.png',
                                               f'{inputs}/c.jpg']
    (inputs / 'a_pred.jpg').write_bytes(b'x')
    with pytest.raises(OutputError, match=r'a_pred\.jpg would replace an input image'):
        plan_outputs([a, inputs / 'a_pred.jpg'], inputs)
    with pytest.raises(OutputError, match=r'a_pred\.jpg exists; pass --force'):
        plan_outputs([a], inputs)
    assert plan_outputs([a], inputs, overwrite=True) == [f'{inputs}/a_pred.jpg']
    with pytest.raises(OutputError, match=rf'{a} and {inputs}/a.jpeg would both be drawn to '
                       rf'{out}/a.jpg'):
        plan_outputs([a, inputs / 'a.jpeg'], out)
    with pytest.raises(OutputError, match=r'--out-dir .*a\.jpg exists and is not a folder'):
        plan_outputs([b], a)


def test_write_image_atomic(tmp_path, monkeypatch):
    image = np.zeros((10, 20, 3), np.uint8)
    image[:, :10] = (255, 0, 0)
    path = str(tmp_path / 'sub' / 'x.png')
    write_image(path, image)
    assert np.array_equal(cv2.imread(path), image)  # PNG: lossless, folder created
    with pytest.raises(FileExistsError):
        write_image(path, image)
    monkeypatch.setattr(files.os, 'replace', lambda *a: (_ for _ in ()).throw(
        KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        write_image(path, np.zeros_like(image), overwrite=True)
    monkeypatch.undo()
    assert np.array_equal(cv2.imread(path), image) and os.listdir(tmp_path / 'sub') == ['x.png']
    write_image(str(tmp_path / 'y.jpg'), image)
    assert np.abs(cv2.imread(str(tmp_path / 'y.jpg')).astype(int) - image).mean() < 3  # JPEG
    with pytest.raises(OutputError, match='cannot encode'):
        write_image(str(tmp_path / 'z.unknown'), image)
