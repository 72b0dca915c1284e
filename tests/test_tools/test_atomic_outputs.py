"""Every tool that writes a checkpoint, config, ONNX file, image or dataset writes it atomically:
interrupted at the last moment before the rename, the old output is untouched and no partial
or temporary file is left; an existing output is replaced only with --force."""
import os

import pytest
import timm
import torch
from mmengine.config import Config

from mmrepghost.deploy import build_model
from mmrepghost.models import repghostnet_classifier_cfg
from tests.conftest import REPO_ROOT, load_tool

CLASSIFIER = f'{REPO_ROOT}/configs/cls/repghost_1_0x.py'
DETECTOR = f'{REPO_ROOT}/configs/retinanet/repghost_1_0x_tiny-coco.py'


@pytest.fixture(scope='module')
def inputs(tmp_path_factory):
    """Train checkpoints of the classifier and the tiny detector, and a timm state dict."""
    root = tmp_path_factory.mktemp('inputs')
    classifier = build_model(Config(dict(model=repghostnet_classifier_cfg('1.0x'))))
    torch.save({'state_dict': classifier.state_dict(), 'meta': {}}, root / 'cls.pth')
    detector_cfg = Config.fromfile(DETECTOR)
    detector_cfg.model.backbone.init_cfg = None
    torch.save({'state_dict': build_model(detector_cfg).state_dict(), 'meta': {}},
               root / 'det.pth')
    torch.save(timm.create_model('repghostnet_100').state_dict(), root / 'timm.pth')
    return root


# tool -> (argv from (inputs, out dir), outputs relative to the out dir)
TOOLS = {
    'reparameterize': (lambda i, o: [CLASSIFIER, f'{i}/cls.pth', f'{o}/deploy.pth'],
                       ['deploy.pth', 'deploy.py']),
    'export_onnx': (lambda i, o: [CLASSIFIER, f'{i}/cls.pth', '--out', f'{o}/model.onnx',
                                  '--shape', '64', '64'], ['model.onnx']),
    'convert_weights': (lambda i, o: [f'{i}/timm.pth', f'{o}/converted.pth', '--from', 'timm'],
                        ['converted.pth']),
    'show_predictions': (lambda i, o: [DETECTOR, f'{i}/det.pth', '--images',
                                       f'{REPO_ROOT}/docs', '--num', '1', '--out',
                                       f'{o}/predictions.png', '--score-thr', '0.9'],
                         ['predictions.png']),
}


def run(tool, argv):
    """The tool's exit status; argparse's SystemExit counts as one."""
    try:
        return load_tool(tool).main(argv)
    except SystemExit as exit_info:
        return exit_info.code


def interrupt_before_rename(*args, **kwargs):
    raise KeyboardInterrupt('interrupted just before the rename')


@pytest.mark.parametrize('tool', list(TOOLS))
def test_interrupted_write_keeps_old_output_and_leaves_no_partial_file(tool, inputs, tmp_path,
                                                                       monkeypatch, capsys):
    argv, outputs = TOOLS[tool][0](inputs, tmp_path), TOOLS[tool][1]
    for name in outputs:
        (tmp_path / name).write_bytes(b'old output')

    # no --force: refused, nothing touched
    assert run(tool, argv) == 2
    refusal = capsys.readouterr().err
    assert 'exists' in refusal and '--force' in refusal, refusal
    assert all((tmp_path / name).read_bytes() == b'old output' for name in outputs)

    # --force, interrupted after the new file is complete but before it is renamed
    # (atomic_write syncs the temporary file, then renames it)
    with monkeypatch.context() as patch:
        patch.setattr(os, 'fsync', interrupt_before_rename)
        with pytest.raises(KeyboardInterrupt):
            run(tool, argv + ['--force'])
    assert all((tmp_path / name).read_bytes() == b'old output' for name in outputs)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(outputs)  # no temp files

    # --force, uninterrupted: replaced
    assert run(tool, argv + ['--force']) == 0
    assert all((tmp_path / name).read_bytes() != b'old output' for name in outputs)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(outputs)


@pytest.mark.parametrize('tool', ['make_tiny_coco', 'make_tiny_imagenet'])
def test_interrupted_dataset_generation_keeps_the_old_set(tool, tmp_path, monkeypatch):
    out = tmp_path / 'set'
    assert load_tool(tool).main(['--out', str(out), '--train', '1', '--val', '1']) == 0
    before = sorted(str(p.relative_to(out)) for p in out.rglob('*'))
    module = load_tool(tool)
    written = []

    def imwrite_then_interrupt(path, image, *args):
        written.append(path)
        if len(written) == 2:
            raise KeyboardInterrupt('interrupted while writing images')
        return True

    monkeypatch.setattr(module.cv2, 'imwrite', imwrite_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        module.main(['--out', str(out), '--train', '3', '--val', '3', '--force'])
    assert sorted(str(p.relative_to(out)) for p in out.rglob('*')) == before
    assert [p.name for p in tmp_path.iterdir()] == ['set']  # the half-built set is gone
