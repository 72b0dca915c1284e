"""torch 2.x routes for the deployed network, each checked against eager PyTorch: the dynamo
ONNX exporter (torch's default), ``torch.export`` and ``torch.compile``."""
import os.path as osp
import sys

import onnx
import onnxruntime as ort
import pytest
import torch
from mmengine.config import Config

from mmrepghost.deploy import build_model, reparameterize_model
from mmrepghost.deploy.onnx import RawOutputs, compare_with_onnxruntime, export_onnx, onnx_op_types
from mmrepghost.models import RepGhostNet, repghostnet_classifier_cfg
from tests.conftest import REPO_ROOT, calibrate_bn_, load_tool, relative_diff

# two input sizes and batch sizes, neither equal to the export example
CHECK_INPUTS = [(2, 3, 96, 64), (3, 3, 64, 128)]
KINDS = ['classifier', 'backbone']


@pytest.fixture(scope='module')
def deployed():
    """Deployed 0.5x classifier (mmpretrain ImageClassifier) and detector backbone, eval mode."""
    torch.manual_seed(0)
    models = dict(
        classifier=build_model(Config(dict(model=repghostnet_classifier_cfg('0.5x',
                                                                            num_classes=10)))),
        backbone=RepGhostNet('0.5x', out_indices=(1, 2, 3)))
    for model in models.values():
        model.init_weights()
        calibrate_bn_(RawOutputs(model), (2, 3, 64, 64))
        reparameterize_model(model, logger='silent')
        model.eval()
    return models


@pytest.mark.parametrize('kind', KINDS)
def test_dynamo_onnx_export_matches_pytorch_at_two_sizes(tmp_path, deployed, kind):
    model = deployed[kind]
    path = str(tmp_path / f'{kind}.onnx')
    names = export_onnx(model, path, (1, 3, 64, 64), exporter='dynamo')
    proto = onnx.load(path)
    assert [op.version for op in proto.opset_import if op.domain == ''] == [18]
    assert [d.dim_param for d in proto.graph.input[0].type.tensor_type.shape.dim] == [
        'batch', '', 'height', 'width']
    assert [out.name for out in proto.graph.output] == names
    ops = onnx_op_types(path)
    assert ops['BatchNormalization'] == 0 and ops['Conv'] > 0, ops
    inputs = [torch.randn(*shape) for shape in CHECK_INPUTS]
    for diff, scale in compare_with_onnxruntime(model, path, inputs):
        assert diff <= 1e-4 * max(1.0, scale), (diff, scale)


def test_torch_onnx_export_with_its_defaults_runs_in_onnxruntime(tmp_path, deployed):
    model, x = deployed['backbone'], torch.randn(2, 3, 64, 64)
    path = str(tmp_path / 'plain.onnx')
    torch.onnx.export(model, (x, ), path)
    # torch's default is the dynamo exporter (opset >= 18); it writes the weights beside
    assert [op.version for op in onnx.load(path).opset_import if op.domain == ''][0] >= 18
    assert osp.isfile(path + '.data')
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        expected = model(x)
    assert len(got) == len(expected) == 3
    for e, g in zip(expected, got):
        assert float((e - torch.from_numpy(g)).abs().max()) <= 1e-4 * max(
            1.0, float(e.abs().max()))


@pytest.mark.parametrize('kind', KINDS)
def test_torch_export_matches_eager(deployed, kind):
    wrapper = RawOutputs(deployed[kind]).eval()  # tensor mode: logits / stage features
    dims = {0: torch.export.Dim.DYNAMIC, 2: torch.export.Dim.DYNAMIC,
            3: torch.export.Dim.DYNAMIC}
    with torch.no_grad():
        program = torch.export.export(wrapper, (torch.randn(2, 3, 64, 64), ),
                                      dynamic_shapes=(dims, ))
        for shape in CHECK_INPUTS:
            x = torch.randn(*shape)
            expected, got = wrapper(x), program.module()(x)
            assert len(got) == len(expected) == (1 if kind == 'classifier' else 3)
            for e, g in zip(expected, got):
                assert g.shape == e.shape and relative_diff(e, g) <= 1e-5


@pytest.mark.parametrize('kind', KINDS)
def test_torch_compile_matches_eager(deployed, kind):
    wrapper = RawOutputs(deployed[kind]).eval()
    compiled = torch.compile(wrapper, fullgraph=True)  # inductor, C++ kernels on CPU
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected, got = wrapper(x), compiled(x)
    assert len(got) == len(expected)
    for e, g in zip(expected, got):
        assert relative_diff(e, g) <= 1e-4


def test_tool_exports_with_dynamo_and_refuses_bad_exporter(tmp_path, capsys):
    config = osp.join(REPO_ROOT, 'configs/cls/repghost_0_5x.py')
    model = build_model(Config.fromfile(config))
    model.init_weights()
    calibrate_bn_(RawOutputs(model), (2, 3, 64, 64))
    checkpoint = str(tmp_path / 'train.pth')
    torch.save(dict(state_dict=model.state_dict(), meta={}), checkpoint)
    out = str(tmp_path / 'cls.onnx')
    tool = load_tool('export_onnx')
    assert tool.main([config, checkpoint, '--out', out, '--shape', '64', '64',
                      '--exporter', 'dynamo']) == 0
    printed = capsys.readouterr().out
    assert '(dynamo exporter, opset 18)' in printed, printed
    assert printed.count('onnxruntime vs PyTorch') == 2
    assert [op.version for op in onnx.load(out).opset_import if op.domain == ''] == [18]
    for argv, message in [
        (['--exporter', 'onnx'], "argument --exporter: invalid choice: 'onnx'"),
        (['--exporter', 'dynamo', '--opset', '17'],
         '--opset must be in [18, 20], got 17 (--exporter dynamo)'),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            tool.main([config, checkpoint, '--out', str(tmp_path / 'x.onnx'), *argv])
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err
    assert not osp.exists(str(tmp_path / 'x.onnx'))


def test_export_onnx_refuses_bad_exporter_opset_and_missing_onnxscript(tmp_path, monkeypatch):
    path = str(tmp_path / 'never.onnx')
    model = torch.nn.Identity()
    with pytest.raises(ValueError, match=r"exporter='onnx' is unknown; allowed: "
                       r"\['torchscript', 'dynamo'\]"):
        export_onnx(model, path, (1, 3, 32, 32), exporter='onnx')
    with pytest.raises(ValueError, match=r"opset=17 is not supported; allowed: 18\.\.20 "
                       r"\(exporter='dynamo'\)"):
        export_onnx(model, path, (1, 3, 32, 32), opset=17, exporter='dynamo')
    monkeypatch.setitem(sys.modules, 'onnxscript', None)  # as if not installed
    with pytest.raises(ImportError, match='pip install onnxscript'):
        export_onnx(model, path, (1, 3, 32, 32), exporter='dynamo')
    assert not osp.exists(path)
