"""tools/deploy_test.py: the metric line on a (synthetic) end-to-end model, and bad input.

Its accuracy against ``mim test`` is tested in tests/test_deploy/test_deploy_accuracy.py.
"""
import os
import os.path as osp
import sys

import pytest

from tests.conftest import REPO_ROOT, coco_data_options, load_tool
from tests.test_runtime.synthetic import CLASSES, make_model

SHAPES_CONFIG = """_base_ = '{base}'
classes = {classes!r}
dataset = dict(data_root='{data}', metainfo=dict(classes=classes))
model = dict(bbox_head=dict(num_classes=len(classes)))
val_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False, dataset=dataset)
test_dataloader = val_dataloader
test_evaluator = dict(ann_file='{data}annotations/instances_val2017.json')
"""


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp('deploy_test')
    data = str(root / 'shapes') + '/'
    load_tool('make_tiny_coco').main(['--out', data, '--train', '1', '--val', '4',
                                      '--categories', 'shapes'])
    base = osp.join(REPO_ROOT, 'configs/retinanet/repghost_1_0x_tiny-coco.py')
    configs = {}
    for name, classes in (('shapes', CLASSES), ('coco', None)):
        path = str(root / f'{name}.py')
        with open(path, 'w') as f:
            if classes is None:  # the tiny config itself: COCO's 80 classes
                f.write(f"_base_ = '{base}'\n")
            else:
                f.write(SHAPES_CONFIG.format(base=base, classes=classes, data=data))
        configs[name] = path
    models = {kind: make_model(str(root), kind, name=kind)
              for kind in ('detection', 'raw')}
    models['no_sidecar'] = make_model(str(root), 'detection', name='no_sidecar', sidecar=False)
    return root, configs, models, data


def run(argv, capsys):
    code = load_tool('deploy_test').main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_metric_line_as_mim_test(setup, capsys):
    root, configs, models, _ = setup
    before = sorted(os.listdir(root))
    code, out, err = run([configs['shapes'], models['detection'], '--batch-size', '3'], capsys)
    assert code == 0, err
    line = out.strip().splitlines()[-1]
    assert line.startswith(f"deploy_test (onnxruntime, batch 3) {models['detection']}: "
                           'coco/bbox_mAP: ')
    for key in ('bbox_mAP_50', 'bbox_mAP_75', 'bbox_mAP_s', 'bbox_mAP_m', 'bbox_mAP_l'):
        assert f'coco/{key}: ' in line
    assert '[4/4] images' in out
    assert sorted(os.listdir(root)) == before  # nothing written


@pytest.mark.parametrize('case', ['other classes', 'raw output', 'no sidecar',
                                  'openvino missing', 'bad batch size'])
def test_bad_input_one_error(setup, capsys, monkeypatch, case):
    root, configs, models, data = setup
    argv = {'other classes': [configs['coco'], models['detection'], '--cfg-options',
                              *coco_data_options(data)],
            'raw output': [configs['shapes'], models['raw']],
            'no sidecar': [configs['shapes'], models['no_sidecar']],
            'openvino missing': [configs['shapes'], models['detection'], '--backend',
                                 'openvino'],
            'bad batch size': [configs['shapes'], models['detection'], '--batch-size', '0']}[case]
    if case == 'openvino missing':
        monkeypatch.setitem(sys.modules, 'openvino', None)  # as if not installed
    if case == 'bad batch size':
        with pytest.raises(SystemExit):
            run(argv, capsys)
        assert '--batch-size must be >= 1, got 0' in capsys.readouterr().err
        return
    code, out, err = run(argv, capsys)
    assert code == 2 and err.count('\n') == 1 and err.startswith('error: '), (out, err)
    expected = {
        'other classes': "the config's test set has other classes than "
                         f"{models['detection']}: 80 classes in the config vs 3 in the model",
        'raw output': 'is a raw-output ONNX file (input \'images\', outputs cls_score_0, '
                      'bbox_pred_0): the runtime needs an end-to-end graph',
        'no sidecar': 'no_sidecar.json',
        'openvino missing': 'pip install openvino',
    }[case]
    assert expected in err, err
