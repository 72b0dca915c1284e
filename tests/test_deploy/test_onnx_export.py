"""ONNX export of the deployed network, checked in onnxruntime against PyTorch."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from mmrepghost.deploy import build_model, reparameterize_model
from mmrepghost.deploy.onnx import (RawOutputs, compare_with_onnxruntime, export_onnx,
                                    onnx_op_types)
from mmrepghost.models import RepGhostNet
from tests.conftest import REPO_ROOT, calibrate_bn_, load_tool

CONFIGS = {
    'classifier': 'configs/_base_/models/repghostnet_1.0x.py',
    'retinanet': 'configs/retinanet/repghost_1_0x_tiny-coco.py',
    'mask_rcnn': 'configs/mask_rcnn/repghost_1_0x_tiny-coco.py',
}
# two input sizes and batch sizes, neither equal to the export size
CHECK_INPUTS = [(1, 3, 224, 224), (2, 3, 160, 288)]


def deployed(kind):
    if kind == 'backbone':
        model = RepGhostNet('1.0x', out_indices=(1, 2, 3))
    else:
        model = build_model(Config.fromfile(osp.join(REPO_ROOT, CONFIGS[kind])))
    model.init_weights()
    calibrate_bn_(RawOutputs(model), (2, 3, 96, 96))
    reparameterize_model(model, logger='silent')
    return model.eval()


@pytest.mark.parametrize('kind', ['classifier', 'backbone', 'retinanet', 'mask_rcnn'])
def test_onnxruntime_matches_pytorch_at_two_sizes(tmp_path, kind):
    model = deployed(kind)
    path = str(tmp_path / f'{kind}.onnx')
    names = export_onnx(model, path, (1, 3, 192, 192))
    ops = onnx_op_types(path)
    inputs = [torch.randn(*shape) for shape in CHECK_INPUTS]
    for diff, scale in compare_with_onnxruntime(model, path, inputs):
        assert diff <= 1e-4 * max(1.0, scale), (diff, scale)
    if kind in ('classifier', 'backbone'):
        # the deployed network is conv, ReLU, SE and add only: no BN, no concatenation
        assert ops['BatchNormalization'] == 0 and ops['Concat'] == 0, ops
        assert ops['Conv'] > 0 and ops['Add'] > 0
    if kind in ('retinanet', 'mask_rcnn'):  # five FPN levels of dense (RPN) head maps
        assert names == [f'cls_score_{i}' for i in range(5)] + [
            f'bbox_pred_{i}' for i in range(5)]


def test_tool_deploys_exports_and_checks(tmp_path, capsys):
    model = build_model(Config.fromfile(osp.join(REPO_ROOT, CONFIGS['classifier'])))
    model.init_weights()
    calibrate_bn_(RawOutputs(model), (2, 3, 64, 64))
    checkpoint = str(tmp_path / 'train.pth')
    torch.save(dict(state_dict=model.state_dict(), meta={}), checkpoint)
    config = osp.join(REPO_ROOT, CONFIGS['classifier'])
    out = str(tmp_path / 'cls.onnx')
    tool = load_tool('export_onnx')
    assert tool.main([config, checkpoint, '--out', out]) == 0
    printed = capsys.readouterr().out
    assert 're-parameterized' in printed and printed.count('onnxruntime vs PyTorch') == 2
    assert osp.getsize(out) > 1e6
    for argv, message in [
        ([checkpoint, '--out', out], 'exists; pass --force'),
        ([checkpoint, '--out', str(tmp_path / 'x.onnx'), '--shape', '200', '224'],
         'H and W must be positive multiples of 32'),
        ([checkpoint, '--out', checkpoint], '--out must end with .onnx'),
        ([checkpoint, '--out', str(tmp_path / 'x.onnx'), '--opset', '9'],
         '--opset must be in [11, 20], got 9'),
    ]:
        with pytest.raises(SystemExit):
            tool.main([config, *argv])
        assert message in capsys.readouterr().err
    assert tool.main([config, str(tmp_path / 'missing.pth'), '--out',
                      str(tmp_path / 'y.onnx')]) == 2
    assert 'checkpoint not found' in capsys.readouterr().err
    assert not osp.exists(str(tmp_path / 'y.onnx'))


def optimized_nodes(path, tmp_path):
    """onnxruntime's optimized graph (ORT_ENABLE_ALL, NCHWc) of ``path``: its op types."""
    import onnx
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.optimized_model_filepath = str(tmp_path / 'optimized.onnx')
    ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])
    return [node.op_type for node in onnx.load(options.optimized_model_filepath).graph.node]


def test_annotated_shapes_let_onnxruntime_fuse_every_residual_add(tmp_path):
    """Every RepGhost bottleneck ends in a residual Add; onnxruntime fuses it into the conv
    before it only when it can tell both inputs have one shape. Without the recorded
    symbolic shapes the adds after strided stages stay separate kernels."""
    import onnx
    model = deployed('classifier')
    plain, annotated = str(tmp_path / 'plain.onnx'), str(tmp_path / 'annotated.onnx')
    export_onnx(model, plain, (1, 3, 224, 224), annotate=False)
    export_onnx(model, annotated, (1, 3, 224, 224))
    adds = onnx_op_types(annotated)['Add']
    assert adds == onnx_op_types(plain)['Add'] == 16  # the same graph: one add per block
    proto = onnx.load(annotated)
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ['batch', 3, 'height', 'width']  # still dynamic
    assert len(proto.graph.value_info) > 100 and not onnx.load(plain).graph.value_info
    unfused = optimized_nodes(plain, tmp_path).count('Add')
    assert unfused >= 4, unfused  # what this guards against
    assert optimized_nodes(annotated, tmp_path).count('Add') == 0
    for diff, scale in compare_with_onnxruntime(model, annotated, [
            torch.randn(*shape) for shape in CHECK_INPUTS]):
        assert diff <= 1e-4 * max(1.0, scale), (diff, scale)


def test_annotate_shapes_names_the_tensor_it_cannot_infer(tmp_path, monkeypatch):
    """... and, unlike onnxruntime's own entry point, writes no half-inferred model into the
    working directory."""
    from onnx import TensorProto, helper

    from mmrepghost.deploy.onnx_info import annotate_shapes
    node = helper.make_node('MysteryOp', ['x'], ['y'], domain='example.custom')
    graph = helper.make_graph([node], 'g', [helper.make_tensor_value_info(
        'x', TensorProto.FLOAT, ['n', 3])], [helper.make_tensor_value_info(
            'y', TensorProto.FLOAT, None)])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17),
                                                    helper.make_opsetid('example.custom', 1)])
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RuntimeError, match="stopped at tensor 'y'"):
        annotate_shapes(proto)
    assert not list(tmp_path.iterdir())
