"""tools/deploy_infer.py: printed results, drawn outputs, and bad inputs (status 2, one
``error:`` line, nothing written); the runtime and the tool never import torch or OpenMMLab."""
import os
import os.path as osp
import shutil
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest

from mmrepghost_runtime import load_model, read_image
from tests.conftest import REPO_ROOT, load_tool
from tests.test_runtime.synthetic import make_model

TOOL = osp.join(REPO_ROOT, 'tools', 'deploy_infer.py')
BLOCKED = ('torch', 'mmcv', 'mmengine', 'mmdet', 'mmpretrain', 'mmrepghost')


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp('deploy_infer')
    models = {kind: make_model(root, kind, name=kind) for kind in
              ('detection', 'instance_segmentation', 'classification', 'raw')}
    images = root / 'images'
    images.mkdir()
    rng = np.random.default_rng(0)
    cv2.imwrite(str(images / 'a.jpg'), rng.integers(0, 256, (240, 320, 3), dtype=np.uint8))
    cv2.imwrite(str(images / 'b.png'), rng.integers(0, 256, (90, 60, 3), dtype=np.uint8))
    cv2.imwrite(str(images / 'rgba.png'), rng.integers(0, 256, (50, 70, 4), dtype=np.uint8))
    cv2.imwrite(str(images / 'deep.png'), rng.integers(0, 65536, (64, 48, 3),
                                                       dtype=np.uint16))
    (images / 'notes.txt').write_text('not an image')
    return root, models, images


def _snapshot(folder):
    return {name: open(osp.join(folder, name), 'rb').read() for name in sorted(os.listdir(
        folder))}


def run(argv, capsys):
    """(status, stdout, stderr) of the tool's main; argparse's SystemExit counts as a status."""
    try:
        code = load_tool('deploy_infer').main([str(a) for a in argv])
    except SystemExit as exit_info:
        code = exit_info.code
    out, err = capsys.readouterr()
    return code, out, err


def test_detections_printed_and_drawn(setup, capsys, tmp_path):
    _, models, images = setup
    out_dir = tmp_path / 'out'
    a, b = images / 'a.jpg', images / 'b.png'
    code, out, err = run([models['instance_segmentation'], a, b, '--out-dir', out_dir,
                          '--score-thr', '0'], capsys)
    assert code == 0, err
    expected = load_model(models['instance_segmentation']).predict(
        [read_image(a)[0], read_image(b)[0]])
    lines = out.splitlines()
    assert lines[0] == f'{a}: 3 detections'
    for line, name, score, box in zip(lines[1:4], expected[0].class_names,
                                      expected[0].scores, expected[0].bboxes):
        assert line == f'  {name} {score:.2f} [{", ".join(f"{v:.1f}" for v in box)}]'
    assert lines[1] == '  disc 0.89 [32.0, 51.2, 160.0, 153.6]'
    assert lines[4] == f'  -> {out_dir}/a.jpg' and lines[5] == f'{b}: 3 detections'
    assert sorted(os.listdir(out_dir)) == ['a.jpg', 'b.png']
    drawn = cv2.imread(str(out_dir / 'b.png'))
    assert drawn.shape == (90, 60, 3) and not np.array_equal(drawn, read_image(b)[0])
    # --score-thr filters what is printed and drawn
    code, out, _ = run([models['detection'], a, '--out-dir', tmp_path / 'thr',
                        '--score-thr', '0.6'], capsys)
    assert code == 0 and out.splitlines()[0] == f'{a}: 2 detections'


def test_classification_top5(setup, capsys, tmp_path):
    _, models, images = setup
    code, out, err = run([models['classification'], images / 'a.jpg', images / 'b.png',
                          '--out-dir', tmp_path, '--batch-size', '2', '--backend', 'openvino',
                          '--threads', '1'], capsys)
    assert code == 0, err
    [result, _] = load_model(models['classification']).predict(
        [read_image(images / 'a.jpg')[0], read_image(images / 'b.png')[0]])
    lines = out.splitlines()
    assert lines[0] == f'{images}/a.jpg: top-3'
    assert lines[1:4] == [f'  {n} {s:.3f}' for n, s in zip(result.top_names, result.top_scores)]
    assert sorted(os.listdir(tmp_path)) == ['a.jpg', 'b.png']


def test_rgba_and_16_bit_inputs_are_converted_with_a_note(setup, capsys, tmp_path):
    _, models, images = setup
    code, out, err = run([models['detection'], images / 'rgba.png', images / 'deep.png',
                          '--out-dir', tmp_path], capsys)
    assert code == 0, err
    assert (f'{images}/rgba.png: note: image with an alpha channel (RGBA or gray + alpha): '
            'alpha dropped, not composited') in out
    assert f'{images}/deep.png: note: 16-bit uint16 samples converted to 8 bits' in out
    assert cv2.imread(str(tmp_path / 'rgba.png')).shape == (50, 70, 3)
    assert cv2.imread(str(tmp_path / 'deep.png')).shape == (64, 48, 3)


def test_out_dir_holding_the_inputs(setup, capsys, tmp_path):
    _, models, images = setup
    folder = tmp_path / 'images'
    shutil.copytree(images, folder)
    before = _snapshot(folder)
    code, out, err = run([models['detection'], folder / 'a.jpg', folder / 'b.png',
                          '--out-dir', folder], capsys)
    assert code == 0, err
    after = _snapshot(folder)
    assert {k: v for k, v in after.items() if k in before} == before  # inputs untouched
    assert sorted(set(after) - set(before)) == ['a_pred.jpg', 'b_pred.png']
    # a second run needs --force to replace its own outputs, and still spares the inputs
    code, _, err = run([models['detection'], folder / 'a.jpg', '--out-dir', folder], capsys)
    assert code == 2 and err == f'error: {folder}/a_pred.jpg exists; pass --force to replace ' \
        'it\n'
    code, _, _ = run([models['detection'], folder / 'a.jpg', '--out-dir', folder, '--force',
                      '--score-thr', '1'], capsys)
    assert code == 0 and _snapshot(folder)['a_pred.jpg'] != after['a_pred.jpg']
    assert _snapshot(folder)['a.jpg'] == before['a.jpg']


@pytest.fixture(scope='module')
def bad_cases(setup):
    """case -> (argv without --out-dir, what the error line says)."""
    root, models, images = setup
    other = root / 'other'
    other.mkdir()
    no_sidecar = make_model(other, 'detection', name='no_sidecar', sidecar=False)
    foreign = make_model(other, 'detection', name='foreign')
    shutil.copy(root / 'classification.json', other / 'foreign.json')
    invalid = make_model(other, 'detection', name='invalid', sidecar=True)
    with open(other / 'invalid.json') as f:
        text = f.read().replace('"pad_divisor": 32', '"pad_divisor": 0')
    with open(other / 'invalid.json', 'w') as f:
        f.write(text)
    a = images / 'a.jpg'
    return {
        'not an image': ([models['detection'], a, images / 'notes.txt'],
                         'notes.txt: not an image OpenCV can decode'),
        'missing image': ([models['detection'], a, images / 'missing.jpg'],
                          'missing.jpg: cannot read the file'),
        'missing sidecar': ([no_sidecar, a], f'has no sidecar {other}/no_sidecar.json; export '
                            'it with tools/export_onnx.py --end2end'),
        'sidecar of another model': ([foreign, a], f"{other}/foreign.json does not belong to "
                                     f"{foreign}: the sidecar lists outputs ['probs']"),
        'invalid sidecar': ([invalid, a], 'preprocess.pad_divisor = 0 is not allowed; expected '
                            'an integer >= 1'),
        'raw-output file': ([models['raw'], a], 'is a raw-output ONNX file'),
        'missing model': ([root / 'missing.onnx', a], 'missing.onnx: no such model file'),
        'unknown backend': ([models['detection'], a, '--backend', 'tensorrt'],
                            "argument --backend: invalid choice: 'tensorrt'"),
        'bad batch size': ([models['detection'], a, '--batch-size', '0'],
                           "argument --batch-size: '0' is not a positive integer"),
        'bad score thr': ([models['detection'], a, '--score-thr', '2'],
                          "argument --score-thr: '2' is not a number in [0, 1]"),
        'two inputs, one output': ([models['detection'], a, images / 'a.jpeg'],
                                   'would both be drawn to'),
    }


CASES = ['not an image', 'missing image', 'missing sidecar', 'sidecar of another model',
         'invalid sidecar', 'raw-output file', 'missing model', 'unknown backend',
         'bad batch size', 'bad score thr', 'two inputs, one output']


@pytest.mark.parametrize('case', CASES)
def test_bad_input_exits_2_and_writes_nothing(setup, bad_cases, capsys, tmp_path, case):
    images = setup[2]
    if case == 'two inputs, one output':
        shutil.copy(images / 'a.jpg', images / 'a.jpeg')
    try:
        argv, message = bad_cases[case]
        before = _snapshot(images)
        out_dir = tmp_path / 'out'
        code, out, err = run(argv + ['--out-dir', out_dir], capsys)
    finally:
        if case == 'two inputs, one output':
            os.remove(images / 'a.jpeg')
    assert code == 2
    error_lines = [line for line in err.splitlines() if line.startswith('error: ') or
                   ': error: ' in line]
    assert len(error_lines) == 1 and message in error_lines[0], err
    assert out == ''
    assert not out_dir.exists()  # nothing written, not even the folder
    if case != 'two inputs, one output':
        assert _snapshot(images) == before


def _python(script, cwd):
    return subprocess.run([sys.executable, '-c', textwrap.dedent(script)], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_backend_not_installed_names_the_pip_package(setup, tmp_path):
    _, models, images = setup
    result = _python(f"""
        import runpy, sys
        sys.modules['openvino'] = None  # as if not installed
        sys.argv = ['deploy_infer.py', {models['detection']!r}, {str(images / 'a.jpg')!r},
                    '--out-dir', {str(tmp_path / 'out')!r}, '--backend', 'openvino']
        runpy.run_path({TOOL!r}, run_name='__main__')
        """, REPO_ROOT)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: backend 'openvino' is not installed")
    assert result.stderr.rstrip().endswith('install it with `pip install openvino`')
    assert result.stderr.count('\n') == 1 and result.stdout == ''
    assert not (tmp_path / 'out').exists()


def test_no_torch_or_openmmlab_import(setup, tmp_path):
    """With torch, mmcv, mmengine, mmdet, mmpretrain and mmrepghost blocked before anything
    else, every runtime module imports and the tool runs a detector (both backends) and a
    classifier."""
    _, models, images = setup
    runs = [[models['instance_segmentation'], str(images / 'a.jpg'), str(images / 'rgba.png'),
             '--out-dir', str(tmp_path / 'seg'), '--batch-size', '2'],
            [models['detection'], str(images / 'b.png'), '--out-dir', str(tmp_path / 'ov'),
             '--backend', 'openvino'],
            [models['classification'], str(images / 'a.jpg'), '--out-dir',
             str(tmp_path / 'cls')]]
    result = _python(f"""
        import sys
        BLOCKED = {BLOCKED!r}
        for name in BLOCKED:
            sys.modules[name] = None  # any import of them raises ImportError
        import importlib, pkgutil, runpy
        import mmrepghost_runtime
        modules = [m.name for m in pkgutil.walk_packages(mmrepghost_runtime.__path__,
                                                         'mmrepghost_runtime.')]
        for name in modules:
            importlib.import_module(name)
        print('modules', sorted(modules))
        for argv in {runs!r}:
            sys.argv = ['deploy_infer.py'] + argv
            try:
                runpy.run_path({TOOL!r}, run_name='__main__')
            except SystemExit as e:
                print('status', e.code)
        leaked = [k for k, v in sys.modules.items() if k.split('.')[0] in BLOCKED and v]
        print('leaked', leaked)
        """, REPO_ROOT)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == 'modules ' + str(sorted(f'mmrepghost_runtime.{name}' for name in (
        'backends', 'draw', 'files', 'image', 'model', 'outputs', 'postprocess', 'preprocess',
        'sidecar')))
    assert lines.count('status 0') == 3 and 'leaked []' in lines, result.stdout + result.stderr
    assert f'{images}/a.jpg: 3 detections' in lines
    assert f'{images}/a.jpg: top-3' in lines
    assert sorted(os.listdir(tmp_path / 'seg')) == ['a.jpg', 'rgba.png']
    assert os.listdir(tmp_path / 'ov') == ['b.png'] and os.listdir(tmp_path / 'cls') == ['a.jpg']
