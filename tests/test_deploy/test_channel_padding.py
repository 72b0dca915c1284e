"""Zero-padding conv channels to a SIMD multiple (mmrepghost.deploy.channel_padding): exactly
the same outputs, padded where channels stay apart, untouched where they would mix."""
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config

from mmrepghost.deploy import build_model, reparameterize_model
from mmrepghost.deploy.channel_padding import pad_channels
from mmrepghost.deploy.onnx import RawOutputs, compare_with_onnxruntime, export_onnx
from tests.conftest import REPO_ROOT, calibrate_bn_, load_tool, se_block_onnx


def _graph(concat=False):
    """x (16 ch) -> dense 3x3 s2 (24) -> depthwise -> 1x1 (20) -> SE (8) -> ... -> Gemm (10),
    with biases (``se_block_onnx``); ``concat``: the 1x1 conv's output also concatenated."""
    return se_block_onnx(dense=24, out=20, squeeze=8, biases=True, concat=concat)


def _run(model, x):
    import onnxruntime as ort
    return ort.InferenceSession(model.SerializeToString(), providers=[
        'CPUExecutionProvider']).run(None, {'x': x})


def _assert_close(got, expected):
    """Equal up to float re-association: 1e-5 of the output scale (fp32 sums reordered)."""
    assert got.shape == expected.shape
    scale = max(1.0, float(np.abs(expected).max()))
    assert float(np.abs(got - expected).max()) <= 1e-5 * scale


def _conv_channels(model):
    from onnx import numpy_helper
    weights = {t.name: numpy_helper.to_array(t).shape for t in model.graph.initializer}
    return {n.name: weights[n.input[1]][0] for n in model.graph.node if n.op_type == 'Conv'}


def test_every_conv_padded_and_the_outputs_equal_at_any_size():
    import onnx
    model = _graph()
    padded, count = pad_channels(model, 16)
    onnx.checker.check_model(padded)
    # 24 -> 32, the depthwise conv after it widened to 32 groups, 20 -> 32, SE 8 -> 16
    assert _conv_channels(padded) == {'dense': 32, 'dw': 32, 'pw': 32, 'se_reduce': 16,
                                      'se_expand': 32}
    assert count == 4  # the dense convs; the depthwise one follows its input
    assert next(a.i for n in padded.graph.node if n.name == 'dw' for a in n.attribute
                if a.name == 'group') == 32
    for shape in ((1, 16, 8, 8), (3, 16, 12, 20)):
        x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
        expected, got = _run(model, x)[0], _run(padded, x)[0]
        assert got.shape == expected.shape == (shape[0], 10)
        _assert_close(got, expected)
    assert _conv_channels(pad_channels(model, 8)[0]) == {
        'dense': 24, 'dw': 24, 'pw': 24, 'se_reduce': 8, 'se_expand': 24}


def test_padding_stops_where_channels_would_mix():
    """The Concat (and the graph output it is) reads the 1x1 conv's output: that conv keeps
    its 20 channels, and so does the SE expand conv multiplied with it; the rest is padded."""
    model = _graph(concat=True)
    padded, count = pad_channels(model, 16)
    assert _conv_channels(padded) == {'dense': 32, 'dw': 32, 'pw': 20, 'se_reduce': 16,
                                      'se_expand': 20}
    assert count == 2
    x = np.random.default_rng(2).standard_normal((2, 16, 16, 16)).astype(np.float32)
    for expected, got in zip(_run(model, x), _run(padded, x)):
        assert got.shape == expected.shape
        _assert_close(got, expected)


def test_bad_multiple():
    with pytest.raises(ValueError, match='multiple must be an int >= 2, got 1'):
        pad_channels(_graph(), 1)


def _deployed(config):
    model = build_model(Config.fromfile(osp.join(REPO_ROOT, config)))
    model.init_weights()
    calibrate_bn_(RawOutputs(model), (2, 3, 96, 96))
    reparameterize_model(model, logger='silent')
    return model.eval()


@pytest.mark.parametrize('config', ['configs/_base_/models/repghostnet_1.0x.py',
                                    'configs/retinanet/repghost_1_0x_tiny-coco.py'])
def test_exported_networks_padded_compute_the_same(tmp_path, config):
    import onnx
    model = _deployed(config)
    plain, padded = str(tmp_path / 'plain.onnx'), str(tmp_path / 'padded.onnx')
    export_onnx(model, plain, (1, 3, 128, 128))
    export_onnx(model, padded, (1, 3, 128, 128), pad_channels_to=16)
    before, after = (_conv_channels(onnx.load(p)) for p in (plain, padded))
    grown = [name for name in before if after[name] != before[name]]
    assert len(grown) >= 20, (len(grown), before)  # RepGhostNet's widths: multiples of 4
    assert all(after[name] % 16 == 0 for name in grown)
    inputs = [torch.randn(1, 3, 128, 128), torch.randn(2, 3, 96, 160)]
    for diff, scale in compare_with_onnxruntime(model, padded, inputs):
        assert diff <= 1e-4 * max(1.0, scale), (diff, scale)


def test_tool_pads_end_to_end_detector_and_refuses_bad_multiples(tmp_path, capsys):
    """--end2end --pad-channels: the tool's own check (same detections as PyTorch at two
    sizes) passes; the graph records the padding."""
    import onnx
    config = osp.join(REPO_ROOT, 'configs/retinanet/repghost_1_0x_tiny-coco.py')
    model = _deployed(config)
    checkpoint = str(tmp_path / 'deploy.pth')
    torch.save(dict(state_dict=model.state_dict(), meta=dict(
        dataset_meta=dict(classes=tuple(f'class {i}' for i in range(
            model.bbox_head.num_classes))))), checkpoint)
    tool = load_tool('export_onnx')
    out = str(tmp_path / 'e2e.onnx')
    assert tool.main([config, checkpoint, '--out', out, '--end2end', '--shape', '128', '128',
                      '--pad-channels', '16']) == 0
    assert 'max abs diff' in capsys.readouterr().out
    meta = {p.key: p.value for p in onnx.load(out).metadata_props}
    assert meta['mmrepghost.channels_padded_to'] == '16'
    with pytest.raises(SystemExit):
        tool.main([config, checkpoint, '--out', str(tmp_path / 'x.onnx'), '--pad-channels',
                   '12'])
    assert '--pad-channels must be 0 (off) or one of 4, 8, 16, 32, 64, got 12' in \
        capsys.readouterr().err
    assert not osp.exists(tmp_path / 'x.onnx')


def test_a_division_of_padded_channels_stops_the_padding():
    """Two convs (20 channels each) divided, then a conv reading the quotient: padded, the
    extra channels would hold 0 / 0 = NaN, which zero weights do not cancel (NaN * 0)."""
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(3)

    def weight(name, *dims):
        return numpy_helper.from_array(rng.standard_normal(dims).astype(np.float32), name)

    nodes = [
        helper.make_node('Conv', ['x', 'wa'], ['a'], name='a', kernel_shape=[1, 1]),
        helper.make_node('Conv', ['x', 'wb'], ['b0'], name='b', kernel_shape=[1, 1]),
        helper.make_node('Sigmoid', ['b0'], ['b'], name='gate'),  # positive: no real 0
        helper.make_node('Div', ['a', 'b'], ['q'], name='div'),
        helper.make_node('Conv', ['q', 'wc'], ['y'], name='c', kernel_shape=[1, 1]),
    ]
    graph = helper.make_graph(nodes, 'div', [helper.make_tensor_value_info(
        'x', TensorProto.FLOAT, ['n', 8, 'h', 'w'])], [helper.make_tensor_value_info(
            'y', TensorProto.FLOAT, ['n', 16, 'h', 'w'])],
        [weight('wa', 20, 8, 1, 1), weight('wb', 20, 8, 1, 1), weight('wc', 16, 20, 1, 1)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)], ir_version=8)
    padded, count = pad_channels(model, 16)
    assert count == 0 and _conv_channels(padded) == {'a': 20, 'b': 20, 'c': 16}
    x = np.random.default_rng(4).standard_normal((1, 8, 5, 5)).astype(np.float32)
    got = _run(padded, x)[0]
    assert np.isfinite(got).all()
    _assert_close(got, _run(model, x)[0])
