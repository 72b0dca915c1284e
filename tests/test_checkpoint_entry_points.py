"""Checkpoint safety at every place mmrepghost loads a file: the tools, init_cfg Pretrained,
and the runner behind `mim test`/`--resume`. A pickled payload is refused naming its global
(and never runs); an empty, truncated or foreign-architecture file gets one clear error."""
import os
import re

import pytest
import torch
from mmengine.config import Config

from mmrepghost.deploy import CheckpointMismatchError, build_model
from mmrepghost.engine import RepGhostRunner
from mmrepghost.models import RepGhostNet, repghostnet_classifier_cfg
from mmrepghost.utils import CheckpointError, UnsafeCheckpointError
from tests.conftest import REPO_ROOT, load_tool

CLASSIFIER = f'{REPO_ROOT}/configs/cls/repghost_1_0x.py'
DETECTOR = f'{REPO_ROOT}/configs/retinanet/repghost_1_0x_tiny-coco.py'


class Payload:
    """Unpickling this would create the marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}', )


@pytest.fixture(scope='module')
def bad_files(tmp_path_factory):
    """{kind: (path, message regex)}: the ways a checkpoint file can be wrong."""
    root = tmp_path_factory.mktemp('bad')
    good = build_model(Config(dict(model=repghostnet_classifier_cfg('1.0x')))).state_dict()
    files = {}
    torch.save({'state_dict': good, 'meta': Payload(root / 'pwned')}, root / 'evil.pth')
    files['malicious'] = (root / 'evil.pth', r'evil\.pth: it pickles globals that are not '
                          r'allowlisted .*posix\.system')
    (root / 'empty.pth').write_bytes(b'')
    files['empty'] = (root / 'empty.pth', r'empty\.pth is empty \(0 bytes\)')
    torch.save({'state_dict': good}, root / 'full.pth')
    data = (root / 'full.pth').read_bytes()
    (root / 'truncated.pth').write_bytes(data[:len(data) // 3])
    files['truncated'] = (root / 'truncated.pth', r'truncated\.pth is truncated or not a '
                          'PyTorch checkpoint')
    other = build_model(Config(dict(model=repghostnet_classifier_cfg('0.5x')))).state_dict()
    torch.save({'state_dict': other}, root / 'other_width.pth')
    files['other architecture'] = (root / 'other_width.pth', r'other_width\.pth')
    return root, files


KINDS = ['malicious', 'empty', 'truncated', 'other architecture']


def run_tool(name, argv, capsys):
    code = load_tool(name).main(argv)
    return code, capsys.readouterr().err


# (tool, argv builder from (checkpoint, out folder), the file it must not write)
TOOLS = {
    'reparameterize': lambda ckpt, out: [CLASSIFIER, ckpt, f'{out}/deploy.pth'],
    'export_onnx': lambda ckpt, out: [CLASSIFIER, ckpt, '--out', f'{out}/model.onnx'],
    'show_predictions': lambda ckpt, out: [DETECTOR, ckpt, '--images', f'{REPO_ROOT}/docs',
                                           '--out', f'{out}/predictions.png'],
    'convert_weights': lambda ckpt, out: [ckpt, f'{out}/converted.pth', '--from', 'official'],
}


# the converter detects the width itself, so a 0.5x checkpoint is a valid input to it; its
# refusal of foreign architectures is in tests/test_tools/test_convert_weights.py
TOOL_CASES = [(tool, kind) for tool in TOOLS for kind in KINDS
              if (tool, kind) != ('convert_weights', 'other architecture')]


@pytest.mark.parametrize('tool,kind', TOOL_CASES)
def test_tools_refuse_bad_checkpoints_with_one_clear_error(tool, kind, bad_files, tmp_path,
                                                           capsys):
    root, files = bad_files
    path, message = files[kind]
    if kind == 'other architecture':
        message = r'other_width\.pth fits neither the train nor the deploy structure'
        if tool != 'show_predictions':  # a classifier config: the same keys, other shapes
            message += (r'.* of another shape, checkpoint vs model \(e\.g\. '
                        r'\[.backbone\.conv_stem\.weight \(8, 3, 3, 3\) vs \(16, 3, 3, 3\)')
    code, err = run_tool(tool, TOOLS[tool](str(path), str(tmp_path)), capsys)
    assert code == 2, err
    assert re.search(r'^error: .*' + message, err, re.M), err
    assert 'Traceback' not in err
    assert list(tmp_path.iterdir()) == []  # nothing written
    assert not (root / 'pwned').exists()  # the payload never ran


@pytest.mark.parametrize('kind', KINDS)
def test_pretrained_init_cfg_refuses_bad_checkpoints(kind, bad_files):
    root, files = bad_files
    path, message = files[kind]
    error = {'malicious': UnsafeCheckpointError, 'other architecture': ValueError}.get(
        kind, CheckpointError)
    if kind == 'other architecture':
        message = r'other_width\.pth.* (another width|shape)'
    pretrained = dict(type='Pretrained', checkpoint=str(path), prefix='backbone.')
    backbone = RepGhostNet(arch='1.0x', init_cfg=pretrained)
    with pytest.raises(error, match=message):
        backbone.init_weights()
    assert not (root / 'pwned').exists()


@pytest.mark.parametrize('kind', KINDS)
def test_runner_load_checkpoint_refuses_bad_checkpoints(kind, bad_files, tmp_path):
    """What `mim test --checkpoint` and `--resume` go through (mmengine's loader, our runner)."""
    root, files = bad_files
    path, message = files[kind]
    runner = RepGhostRunner(
        model=build_model(Config(dict(model=repghostnet_classifier_cfg('1.0x')))),
        work_dir=str(tmp_path))
    error, expected = {
        'malicious': (UnsafeCheckpointError, r'evil\.pth.*posix\.system'),
        'empty': (CheckpointError, r'empty\.pth is empty'),
        'truncated': (CheckpointError, r'truncated\.pth is truncated'),
        'other architecture': (CheckpointMismatchError,
                               r'other_width\.pth does not fit the backbone of ImageClassifier: '
                               r'.*backbone\.conv_stem\.weight \(8, 3, 3, 3\) vs \(16, 3, 3, 3\)'),
    }[kind]
    with pytest.raises(error, match=re.compile(expected, re.S)) as info:
        runner.load_checkpoint(str(path))
    if kind != 'malicious':
        assert not isinstance(info.value, UnsafeCheckpointError)
    assert not (root / 'pwned').exists()
