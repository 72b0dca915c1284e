"""The sidecar format: round trip, strict validation with one clear error, atomic writing."""
import copy
import json
import os

import pytest

from mmrepghost_runtime import files
from mmrepghost_runtime.sidecar import (FORMAT, Sidecar, SidecarError, load_sidecar,
                                        sidecar_path, write_sidecar)
from tests.test_runtime.synthetic import sidecar_dict

EXPORT_ID = '0123456789abcdef0123456789abcdef'


@pytest.mark.parametrize('kind', ['detection', 'instance_segmentation', 'classification',
                                  'logits'])
def test_round_trip(kind, tmp_path):
    d = sidecar_dict(kind, EXPORT_ID)
    sidecar = Sidecar.from_dict(d)
    assert sidecar.to_dict() == d
    assert list(sidecar.to_dict()) == ['format', 'task', 'export_id', 'input', 'outputs',
                                       'classes', 'preprocess', 'postprocess', 'source']
    assert sidecar.num_classes == 3 and sidecar.format == FORMAT
    path = write_sidecar(sidecar, sidecar_path(tmp_path / 'm.onnx'))
    assert path == str(tmp_path / 'm.json')
    assert json.loads(open(path).read()) == d
    assert load_sidecar(tmp_path / 'm.onnx') == sidecar
    with pytest.raises(AttributeError):  # frozen
        sidecar.task = 'classification'


def test_resize_variants_and_int_numbers_round_trip():
    d = sidecar_dict('classification', EXPORT_ID)
    d['preprocess'] = dict(d['preprocess'], mean=[0, 0, 0], std=[1, 1, 1], pad_value=0,
                           resize={'type': 'fixed', 'size': [224, 160], 'backend': 'cv2',
                                   'interpolation': 'area'})
    out = Sidecar.from_dict(d).to_dict()['preprocess']
    assert out['resize'] == d['preprocess']['resize']
    assert out['mean'] == [0.0, 0.0, 0.0] and isinstance(out['mean'][0], float)
    assert isinstance(out['pad_value'], float)
    d['preprocess']['resize'] = None  # a test pipeline without a resize step
    assert Sidecar.from_dict(d).to_dict() == d


def _with(d, dotted, value):
    d = copy.deepcopy(d)
    *parents, last = dotted.split('.')
    target = d
    for key in parents:
        target = target[key]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return d


# (dotted key, bad value, words the message must contain)
BAD = [
    ('format', 'mmdeploy/1', ['format', "'mmdeploy/1'", FORMAT]),
    ('task', 'segmentation', ['task', "'segmentation'", "'detection'", "'classification'"]),
    ('export_id', 'not-a-uuid', ['export_id', 'not-a-uuid', '32 lowercase hex']),
    ('outputs', ['dets'], ['outputs', "['dets', 'labels']"]),
    ('outputs', ['probs'], ['outputs', "for task 'detection'"]),
    ('classes', [], ['classes', 'non-empty list']),
    ('classes', ['disc', 3], ['classes', 'strings']),
    ('input', '', ['input', 'non-empty string']),
    ('preprocess.color_order', 'RGB', ['preprocess.color_order', "'RGB'", "'rgb', 'bgr'"]),
    ('preprocess.resize.type', 'scale', ['preprocess.resize.type', "'keep_ratio'",
                                         "'resize_edge'"]),
    ('preprocess.resize.interpolation', 'box', ['preprocess.resize.interpolation', "'box'",
                                                "backend 'cv2'", "'area'"]),
    ('preprocess.resize.backend', 'turbojpeg', ['preprocess.resize.backend', "'pillow'"]),
    ('preprocess.resize.scale', [320], ['preprocess.resize.scale', '2 positive integers']),
    ('preprocess.resize.scale', [320.0, 320], ['preprocess.resize.scale', 'integers']),
    ('preprocess.resize.size', [320, 320], ['unknown key', 'preprocess.resize', "'size'",
                                            'scale']),
    ('preprocess.mean', [1, 2], ['preprocess.mean', '3 numbers']),
    ('preprocess.std', [58.0, 0.0, 57.0], ['preprocess.std[1]', 'positive number']),
    ('preprocess.mean', [1, float('nan'), 3], ['preprocess.mean[1]', 'finite']),
    ('preprocess.pad_divisor', 0, ['preprocess.pad_divisor', 'integer >= 1']),
    ('preprocess.pad_divisor', True, ['preprocess.pad_divisor', 'integer >= 1']),
    ('preprocess.center_crop', 224, ['preprocess.center_crop', '2 positive integers']),
    ('preprocess.pad_value', KeyError, ['missing key', 'preprocess.pad_value']),
    ('preprocess.extra', 1, ['unknown key', "'extra'", 'color_order']),
    ('postprocess.nms', {'iou_threshold': 0.5}, ['unknown key', "postprocess.'nms'",
                                                 'iou_threshold']),
    ('postprocess.score_thr', 1.5, ['postprocess.score_thr', '[0.0, 1.0]']),
    ('postprocess.max_per_img', 0, ['postprocess.max_per_img', 'integer >= 1']),
    ('source.checkpoint_sha256', 'abc', ['source.checkpoint_sha256', 'sha256']),
    ('source', {'config': 'a.py'}, ['missing key',
                                    'source.checkpoint']),
    ('extra', 1, ['unknown key', "'extra'", 'format, task']),
    ('classes', KeyError, ['missing key', 'classes']),
]


@pytest.mark.parametrize('key,value,words', BAD, ids=[f'{k}={v!r}' for k, v, _ in BAD])
def test_invalid_values_name_key_and_allowed(key, value, words):
    d = _with(sidecar_dict('detection', EXPORT_ID), key, value)
    with pytest.raises(SidecarError) as info:
        Sidecar.from_dict(d, source='m.json')
    message = str(info.value)
    assert message.startswith('sidecar m.json: ')
    for word in words:
        assert word in message, (word, message)
    assert isinstance(info.value, ValueError)


def test_task_specific_rules():
    seg = sidecar_dict('instance_segmentation', EXPORT_ID)
    del seg['postprocess']['mask_thr_binary']
    with pytest.raises(SidecarError, match='missing key postprocess.mask_thr_binary'):
        Sidecar.from_dict(seg)
    cls = sidecar_dict('classification', EXPORT_ID, postprocess={'score_thr': 0.1})
    with pytest.raises(SidecarError, match=r"postprocess = \{'score_thr': 0.1\}.*\{\} for a "
                       'classifier'):
        Sidecar.from_dict(cls)
    edge = _with(sidecar_dict('classification', EXPORT_ID), 'preprocess.resize.edge', 'longer')
    with pytest.raises(SidecarError, match=r"preprocess.resize.edge = 'longer'.*'short', "
                       "'long', 'width', 'height'"):
        Sidecar.from_dict(edge)
    assert Sidecar.from_dict(seg | {'postprocess': {'mask_thr_binary': 0.4}}).mask_thr_binary \
        == 0.4


def test_not_a_dict():
    with pytest.raises(SidecarError, match='the sidecar must be a JSON object, got list'):
        Sidecar.from_dict([1, 2])
    with pytest.raises(SidecarError, match='preprocess.resize = 3 is not allowed'):
        Sidecar.from_dict(_with(sidecar_dict('detection', EXPORT_ID), 'preprocess.resize', 3))


def test_paths_and_missing_or_broken_sidecar(tmp_path):
    assert sidecar_path('a/b/model.onnx') == 'a/b/model.json'
    assert sidecar_path('a/b.v1/model.ONNX') == 'a/b.v1/model.json'
    with pytest.raises(SidecarError, match=r'model\.pth: expected an ONNX model path ending '
                       r'in \.onnx'):
        sidecar_path('model.pth')
    model = tmp_path / 'det.onnx'
    with pytest.raises(SidecarError) as info:
        load_sidecar(model)
    assert f'expected {tmp_path}/det.json' in str(info.value)
    assert 'tools/export_onnx.py --end2end' in str(info.value)
    (tmp_path / 'det.json').write_text('{"format": ')
    with pytest.raises(SidecarError, match=r'det\.json is not valid JSON: Expecting value: '
                       'line 1 column 12'):
        load_sidecar(model)
    (tmp_path / 'det.json').write_text(json.dumps(sidecar_dict('detection', 'x' * 32)))
    with pytest.raises(SidecarError, match=rf"sidecar {tmp_path}/det\.json: export_id = "
                       "'x{32}'"):
        load_sidecar(model)


def test_write_is_atomic_and_refuses_overwrite(tmp_path, monkeypatch):
    path = str(tmp_path / 'm.json')
    first = Sidecar.from_dict(sidecar_dict('detection', EXPORT_ID))
    second = Sidecar.from_dict(sidecar_dict('detection', 'f' * 32))
    write_sidecar(first.to_dict(), path)  # a dict is validated, then written
    with pytest.raises(FileExistsError, match='m.json exists; pass --force'):
        write_sidecar(second, path)
    assert load_sidecar(tmp_path / 'm.onnx').export_id == EXPORT_ID

    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(files.os, 'replace', interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_sidecar(second, path, overwrite=True)
    monkeypatch.undo()
    assert load_sidecar(tmp_path / 'm.onnx').export_id == EXPORT_ID  # old file intact
    assert sorted(os.listdir(tmp_path)) == ['m.json']  # no temporary file left
    write_sidecar(second, path, overwrite=True)
    assert load_sidecar(tmp_path / 'm.onnx').export_id == 'f' * 32
    with pytest.raises(SidecarError, match=r'ends in \.json'):
        write_sidecar(second, str(tmp_path / 'm.onnx'))
    with pytest.raises(SidecarError, match='task'):
        write_sidecar(dict(sidecar_dict('detection', EXPORT_ID), task='x'), path, True)
    assert load_sidecar(tmp_path / 'm.onnx').export_id == 'f' * 32
