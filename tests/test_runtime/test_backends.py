"""onnxruntime and OpenVINO sessions: same names, metadata and outputs; clear errors."""
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from mmrepghost_runtime.backends import BACKENDS, open_session, read_onnx_info
from tests.test_runtime.synthetic import (CLASSES, MASKS, OUTPUTS, expected_detections,
                                          expected_probs, make_model)

KINDS = ['detection', 'instance_segmentation', 'classification', 'logits', 'raw']


@pytest.fixture(scope='module')
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp('backends')
    return {kind: make_model(root, kind, name=kind) for kind in KINDS}


@pytest.mark.parametrize('kind', KINDS)
def test_backends_agree_on_names_metadata_and_outputs(models, kind):
    path = models[kind]
    sessions = {backend: open_session(path, backend, threads=1) for backend in BACKENDS}
    proto = onnx.load(path, load_external_data=False)
    metadata = {p.key: p.value for p in proto.metadata_props}
    if kind != 'raw':
        assert metadata['mmrepghost.num_classes'] == str(len(CLASSES))
    rng = np.random.default_rng(0)
    for shape in [(1, 3, 64, 96), (3, 3, 128, 32)]:  # dynamic batch, height and width
        batch = rng.standard_normal(shape).astype(np.float32)
        results = {}
        for backend, session in sessions.items():
            assert session.backend == backend
            assert session.input_name == ('images' if kind == 'raw' else 'input')
            assert session.output_names == tuple(OUTPUTS[kind])
            assert session.metadata == metadata
            results[backend] = session.run(batch)
            assert list(results[backend]) == OUTPUTS[kind]
        ort, ov = results['onnxruntime'], results['openvino']
        for name in OUTPUTS[kind]:
            assert ort[name].shape == ov[name].shape and ort[name].dtype == ov[name].dtype
            assert np.abs(ort[name] - ov[name]).max() <= 1e-4, name
        if kind in ('detection', 'instance_segmentation'):
            dets, labels = expected_detections(batch)
            assert np.abs(ort['dets'] - dets).max() <= 1e-5
            assert ort['labels'].dtype == np.int64 and np.array_equal(ort['labels'], labels)
        if kind == 'instance_segmentation':
            assert np.array_equal(ort['masks'][shape[0] - 1], MASKS)
        if kind == 'classification':
            assert np.abs(ort['probs'] - expected_probs(batch)).max() <= 1e-6


def test_read_onnx_info_matches_the_onnx_package(models, tmp_path):
    for kind, path in models.items():
        proto = onnx.load(path)
        info = read_onnx_info(path)
        assert info.inputs == tuple(i.name for i in proto.graph.input)
        assert info.outputs == tuple(o.name for o in proto.graph.output)
        assert info.metadata == {p.key: p.value for p in proto.metadata_props}
    # initializers listed among the graph inputs (IR < 4 style) are not inputs
    weight = numpy_helper.from_array(np.full((3, 2), 0.5, np.float32), 'weight')
    graph = helper.make_graph(
        [helper.make_node('GlobalAveragePool', ['input'], ['pooled']),
         helper.make_node('Flatten', ['pooled'], ['flat']),
         helper.make_node('MatMul', ['flat', 'weight'], ['logits'])], 'g',
        [helper.make_tensor_value_info('input', TensorProto.FLOAT, ['n', 3, 'h', 'w']),
         helper.make_tensor_value_info('weight', TensorProto.FLOAT, [3, 2])],
        [helper.make_tensor_value_info('logits', TensorProto.FLOAT, ['n', 2])],
        initializer=[weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
    model.ir_version = 8
    helper.set_model_props(model, {'a': 'b', 'ünïcode': 'välue'})
    path = str(tmp_path / 'init.onnx')
    onnx.save(model, path)
    info = read_onnx_info(path)
    assert info.inputs == ('input', ) and info.outputs == ('logits', )
    assert info.metadata == {'a': 'b', 'ünïcode': 'välue'}
    session = open_session(path, 'openvino')
    out = session.run(np.ones((2, 3, 4, 4), np.float32))
    assert session.output_names == ('logits', ) and np.allclose(out['logits'], 1.5)


def test_not_an_onnx_file(tmp_path):
    for name, content in [('text.onnx', b'hello world, not protobuf'), ('empty.onnx', b'')]:
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(ValueError, match=rf'{name}: (not a readable ONNX model|an empty '
                           'file)'):
            read_onnx_info(path)
        for backend in BACKENDS:
            with pytest.raises(ValueError, match=rf'{name}'):
                open_session(path, backend)


def test_unknown_backend_threads_and_missing_file(models, tmp_path):
    with pytest.raises(ValueError, match=r"unknown backend 'tensorrt'; available: "
                       'onnxruntime, openvino'):
        open_session(models['detection'], 'tensorrt')
    for threads in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match='threads = .*: expected a positive integer'):
            open_session(models['detection'], threads=threads)
    with pytest.raises(FileNotFoundError, match='missing.onnx: no such model file'):
        open_session(tmp_path / 'missing.onnx')


@pytest.mark.parametrize('backend', BACKENDS)
def test_backend_not_installed_names_the_pip_package(models, monkeypatch, backend):
    monkeypatch.setitem(sys.modules, backend, None)  # import fails as if not installed
    with pytest.raises(ImportError, match=rf"backend '{backend}' is not installed .*"
                       rf'`pip install {backend}`'):
        open_session(models['detection'], backend)


def test_threads_are_applied(models):
    session = open_session(models['classification'], 'onnxruntime', threads=1)
    assert session._session.get_session_options().intra_op_num_threads == 1
    session = open_session(models['classification'], 'openvino', threads=1)
    assert int(session._compiled.get_property('INFERENCE_NUM_THREADS')) == 1
    # f32 even on CPUs whose default is bf16 (AMX) or f16
    assert str(session._compiled.get_property('INFERENCE_PRECISION_HINT')) == \
        "<Type: 'float32'>"
