"""mmrepghost.utils.ov_profile: OpenVINO's profiling info holds means since compilation."""
import numpy as np
import pytest

from mmrepghost.utils.ov_profile import NodeTime, mean_times, snapshot


def test_mean_of_the_span_is_recovered_from_two_running_means():
    # 2 runs of 3 ms, then 6 runs of 1 ms: the running mean reads 1.5 ms at the end
    before = {'conv': ('Convolution', 3e-3)}
    after = {'conv': ('Convolution', (2 * 3e-3 + 6 * 1e-3) / 8), 'new': ('Reorder', 1e-4)}
    times = {t.node_name: t for t in mean_times(before, after, 2, 6)}
    assert times['conv'] == NodeTime('conv', 'Convolution', pytest.approx(1.0))
    assert times['new'].ms == pytest.approx(8 * 0.1 / 6)  # absent before: it ran only since
    with pytest.raises(ValueError, match='runs must be >= 1, got 0'):
        mean_times(before, after, 2, 0)


def test_openvino_reports_means_since_compilation(tmp_path):
    """The premise, checked on the installed OpenVINO: after slow inferences, fast ones move
    the reported time only gradually; the span's mean is what mean_times recovers."""
    import onnx
    import openvino as ov
    from onnx import TensorProto, helper, numpy_helper
    w = numpy_helper.from_array(np.ones((16, 16, 3, 3), np.float32) / 144, 'w')
    graph = helper.make_graph(
        [helper.make_node('Conv', ['x', 'w'], ['c'], pads=[1] * 4),
         helper.make_node('Relu', ['c'], ['y'])], 'g',
        [helper.make_tensor_value_info('x', TensorProto.FLOAT, [1, 16, 'h', 'w'])],
        [helper.make_tensor_value_info('y', TensorProto.FLOAT, None)], [w])
    path = str(tmp_path / 'm.onnx')
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)],
                                ir_version=8), path)
    core = ov.Core()
    request = core.compile_model(core.read_model(path), 'CPU', {
        'PERF_COUNT': True, 'INFERENCE_NUM_THREADS': 1}).create_infer_request()
    big, small = (np.ones((1, 16, s, s), np.float32) for s in (256, 8))
    for _ in range(5):
        request.infer({'x': big})
    slow = snapshot(request)
    for _ in range(5):
        request.infer({'x': small})
    after = snapshot(request)
    total = sum(mean for _, mean in after.values())
    # a last-run reading would be the small input's time, far below the slow mean's half
    assert total > 0.4 * sum(mean for _, mean in slow.values())
    span = sum(t.ms for t in mean_times(slow, after, 5, 5))
    assert span < 0.2 * sum(mean for _, mean in slow.values()) * 1e3
