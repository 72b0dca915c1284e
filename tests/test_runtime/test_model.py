"""load_model / DeployedModel: predictions in original-image pixels, and one clear error per
model that is not usable (raw output, no sidecar, a sidecar of another model)."""
import shutil

import numpy as np
import pytest

from mmrepghost_runtime import (BACKENDS, Classification, Detections, ModelError, SidecarError,
                                load_model, preprocess)
from tests.test_runtime.synthetic import (CLASSES, LABELS, REL_BOXES, expected_detections,
                                          expected_probs, make_model)


def _images():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, shape, dtype=np.uint8)
            for shape in [(240, 320, 3), (100, 50, 3), (77, 123, 3)]]


@pytest.fixture(scope='module')
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp('models')
    return {kind: make_model(root, kind, name=kind)
            for kind in ('detection', 'instance_segmentation', 'classification', 'logits')}


def _expected_boxes(batch, meta):
    """The synthetic graph's boxes for this padded batch, in the image's pixels."""
    _, _, h, w = batch.shape
    boxes = REL_BOXES[:3] * np.array([w, h, w, h], np.float32)
    boxes = boxes / np.array(meta.scale_factor * 2, np.float32)
    height, width = meta.ori_shape
    return np.stack([boxes[:, 0].clip(0, width), boxes[:, 1].clip(0, height),
                     boxes[:, 2].clip(0, width), boxes[:, 3].clip(0, height)], axis=1)


@pytest.mark.parametrize('backend', BACKENDS)
def test_detection_in_original_pixels(models, backend):
    model = load_model(models['detection'], backend, threads=1)
    assert model.task == 'detection' and model.classes == CLASSES
    images = _images()
    for batch_size in (1, 3):
        results = model.predict(images, batch_size=batch_size)
        assert len(results) == 3
        for start in range(0, 3, batch_size):
            batch, metas = preprocess(images[start:start + batch_size],
                                      model.sidecar.preprocess)
            dets, _ = expected_detections(batch)
            for i, meta in enumerate(metas):
                result = results[start + i]
                assert isinstance(result, Detections) and len(result) == 3  # padding dropped
                assert result.image_shape == images[start + i].shape[:2]
                np.testing.assert_allclose(result.bboxes, _expected_boxes(batch, meta),
                                           rtol=1e-5, atol=1e-3)
                np.testing.assert_allclose(result.scores, dets[i, :3, 4], atol=1e-5)
                assert list(result.labels) == list(LABELS[:3])
                assert result.class_names == ('disc', 'rectangle', 'triangle')
                assert result.masks is None
    # one image of 240x320: keep_ratio (320, 320) keeps it, pads to 256x320
    [single] = model.predict(images[0])
    np.testing.assert_allclose(single.bboxes[0], [32, 51.2, 160, 153.6], atol=1e-3)
    # score_thr drops low scores on top of the graph's
    scores = single.scores
    [high] = model.predict(images[:1], score_thr=float(np.median(scores)))
    assert len(high) == int((scores >= np.median(scores)).sum()) == 2


def test_instance_segmentation_masks(models):
    model = load_model(models['instance_segmentation'])
    image = _images()[0]
    [result] = model.predict([image])
    assert result.masks.shape == (3, 240, 320) and result.masks.dtype == bool
    # detection 3 (label 1) has the 'left half' mask over box (192, 153.6)-(320, 240)
    x1, y1, x2, y2 = result.bboxes[2]
    ys, xs = np.nonzero(result.masks[2])
    assert xs.min() == round(x1) and xs.max() == round((x1 + x2) / 2) - 1
    assert ys.min() == int(np.floor(y1)) + (y1 % 1 > 0.5) and ys.max() == 239
    # the disc mask lies inside its box and is roughly a disc of radius 10/28 of the box
    x1, y1, x2, y2 = result.bboxes[0]
    area = result.masks[0].sum()
    assert abs(area - np.pi * (10 / 28) ** 2 * (x2 - x1) * (y2 - y1)) < 0.05 * area


def test_classifiers(models):
    images = _images()
    probs_model = load_model(models['classification'])
    logits_model = load_model(models['logits'])
    with_probs = probs_model.predict(images, batch_size=2)
    with_logits = logits_model.predict(images, batch_size=3, topk=2)
    batch, _ = preprocess(images, probs_model.sidecar.preprocess)
    assert batch.shape == (3, 3, 64, 64)  # ResizeEdge 72 + CenterCrop 64
    expected = expected_probs(batch)
    for p, q, e in zip(with_probs, with_logits, expected):
        assert isinstance(p, Classification)
        np.testing.assert_allclose(p.scores, e, atol=1e-6)
        np.testing.assert_allclose(q.scores, e, atol=1e-6)  # softmax applied to logits
        assert list(p.top_indices) == list(np.argsort(-e)) and len(q.top_indices) == 2
        assert p.top_names[0] == CLASSES[int(np.argmax(e))]


def test_backends_predict_the_same(models):
    images = _images()
    for kind in ('instance_segmentation', 'classification'):
        ort = load_model(models[kind], 'onnxruntime').predict(images, batch_size=3)
        ov = load_model(models[kind], 'openvino').predict(images, batch_size=3)
        for a, b in zip(ort, ov):
            np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)
            if kind == 'instance_segmentation':
                np.testing.assert_allclose(a.bboxes, b.bboxes, atol=1e-3)
                assert (a.masks == b.masks).mean() > 0.999


def test_raw_output_file(tmp_path):
    path = make_model(tmp_path, 'raw')
    with pytest.raises(ModelError) as info:
        load_model(path)
    message = str(info.value)
    assert 'raw-output ONNX file' in message and "input 'images'" in message
    assert 'cls_score_0, bbox_pred_0' in message
    assert 'tools/export_onnx.py --end2end' in message


def test_missing_sidecar(tmp_path):
    path = make_model(tmp_path, 'detection', sidecar=False)
    with pytest.raises(ModelError, match=rf'{tmp_path}/model.onnx has no sidecar '
                       rf'{tmp_path}/model.json; export it with tools/export_onnx.py --end2end'):
        load_model(path)


def test_sidecar_of_another_model(tmp_path):
    det = make_model(tmp_path, 'detection', name='det')
    cls = make_model(tmp_path, 'classification', name='cls')
    det_json = tmp_path / 'det.json'
    original = det_json.read_bytes()
    shutil.copy(tmp_path / 'cls.json', det_json)
    with pytest.raises(ModelError) as info:
        load_model(det)
    assert str(info.value) == (
        f"{tmp_path}/det.json does not belong to {det}: the sidecar lists outputs ['probs'], "
        "the model has ['dets', 'labels'] (missing in the model: ['probs']; not in the "
        "sidecar: ['dets', 'labels'])")
    # another export of the same kind of model: same outputs, another export_id
    other = make_model(tmp_path, 'detection', name='other')
    shutil.copy(tmp_path / 'other.json', det_json)
    ids = [load_model(p).sidecar.export_id for p in (other, cls)]
    with pytest.raises(ModelError, match=r"does not belong to .*det.onnx: mmrepghost.export_id "
                       r"is '[0-9a-f]{32}' in the model and " + repr(ids[0])):
        load_model(det)
    det_json.write_bytes(original)
    assert load_model(det).sidecar.export_id != ids[0]


def test_metadata_disagreements(tmp_path):
    path = make_model(tmp_path, 'detection', name='classes',
                      metadata={'mmrepghost.export_id': 'a' * 32, 'mmrepghost.task': 'detection',
                                'mmrepghost.num_classes': '80'}, export_id='a' * 32)
    with pytest.raises(ModelError, match="mmrepghost.num_classes is '80' in the model and '3' "
                       'in the sidecar'):
        load_model(path)
    path = make_model(tmp_path, 'detection', name='task', export_id='b' * 32,
                      metadata={'mmrepghost.export_id': 'b' * 32,
                                'mmrepghost.task': 'instance_segmentation'})
    with pytest.raises(ModelError, match="mmrepghost.task is 'instance_segmentation' in the "
                       "model and 'detection' in the sidecar"):
        load_model(path)
    path = make_model(tmp_path, 'detection', name='nometa', metadata={})
    with pytest.raises(ModelError, match='carries no mmrepghost.export_id metadata.*--end2end'):
        load_model(path)


def test_other_errors(tmp_path, models):
    with pytest.raises(ValueError, match="unknown backend 'tvm'; available: onnxruntime, "
                       'openvino'):
        load_model(models['detection'], 'tvm')
    with pytest.raises(FileNotFoundError, match='missing.onnx: no such model file'):
        load_model(tmp_path / 'missing.onnx')
    with pytest.raises(SidecarError, match='expected an ONNX model path ending in .onnx'):
        load_model(tmp_path / 'model.xml')
    path = make_model(tmp_path, 'detection', name='bad')
    (tmp_path / 'bad.json').write_text((tmp_path / 'bad.json').read_text().replace(
        '"keep_ratio"', '"keepratio"'))
    with pytest.raises(SidecarError, match="preprocess.resize.type = 'keepratio'"):
        load_model(path)
    with pytest.raises(ValueError, match='batch_size = 0'):
        load_model(models['detection']).predict(_images(), batch_size=0)
