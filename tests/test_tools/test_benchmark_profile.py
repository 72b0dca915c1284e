"""tools/benchmark_profile.py: the per-node FLOP counting and kinds on hand-made graphs, the
kernel-to-node mapping, and a --quick run's tables."""
import csv

import numpy as np
import pytest

from tests.conftest import load_tool, se_block_onnx


@pytest.fixture(scope='module')
def tool():
    return load_tool('benchmark_profile')


def _graph(tool, shape=(1, 16, 8, 8)):
    """``se_block_onnx()`` (16 -> 32 -> 24 channels, SE 8, FC 10), shapes inferred at
    ``shape`` (None: dynamic batch, height and width, no shapes inferred)."""
    model = se_block_onnx()
    return model if shape is None else tool.static_shapes(model, shape)


def test_node_flops_match_hand_counts(tool):
    model = _graph(tool, (2, 16, 8, 8))
    costs = tool.graph_costs(model)
    # dense: 2 * N*Cout*Hout*Wout * Cin*kh*kw, output 2x32x4x4
    assert costs['dense']['flops'] == 2 * (2 * 32 * 4 * 4) * (16 * 3 * 3)
    # depthwise: Cin/groups = 1
    assert costs['dw']['flops'] == 2 * (2 * 32 * 4 * 4) * (1 * 3 * 3)
    assert costs['pw']['flops'] == 2 * (2 * 24 * 4 * 4) * 32
    assert costs['se_reduce']['flops'] == 2 * (2 * 8) * 24
    # Gemm: 2*M*N*K, M=2, N=10, K=24
    assert costs['fc']['flops'] == 2 * 2 * 10 * 24
    assert costs['add']['flops'] == 2 * 24 * 4 * 4  # one a output element
    assert costs['flatten']['flops'] == 0
    # bytes: fp32 input, weights and output of the node; a fused activation moves none
    assert costs['dw']['bytes'] == 4 * (2 * 32 * 4 * 4 * 2 + 32 * 9)
    assert costs['relu0']['bytes'] == 0
    assert costs['dw']['label'] == 'conv 3x3 dw 32->32 @4x4'
    assert costs['dw']['channels'] == 32


def test_kinds(tool):
    kinds = tool.classify_nodes(_graph(tool))
    assert kinds == {
        'dense': 'dense kxk conv', 'relu0': 'dense kxk conv', 'dw': 'depthwise conv',
        'pw': 'pointwise conv', 'se_pool': 'SE block', 'se_reduce': 'SE block',
        'se_relu': 'SE block', 'se_expand': 'SE block', 'se_gate': 'SE block',
        'se_mul': 'SE block', 'add': 'elementwise', 'pool': 'FC head', 'flatten': 'FC head',
        'fc': 'FC head'}


def test_kernel_mapping(tool):
    model = _graph(tool)
    costs, index = tool.graph_costs(model), tool.node_index(model)
    # onnxruntime: NCHWc conv named after the fused activation's output; node names; fused Gemm
    assert tool.ort_node_for('r0_nchwc', 'Conv', index).name == 'dense'
    assert tool.ort_node_for('se_mul', 'Mul', index).name == 'se_mul'
    assert tool.ort_node_for('fused fc', 'FusedGemm', index).name == 'fc'
    assert tool.ort_node_for('ReorderOutput_token_3', 'ReorderOutput', index) is None
    # OpenVINO: '<onnx name>/WithoutBiases', or the output tensor's name
    assert tool.ov_node_for('pw/WithoutBiases', index) == 'pw'
    assert tool.ov_node_for('y', index) == 'fc'
    assert tool.ov_node_for('x_abcd_acdb_', index) is None
    assert tool.kind_of_kernel(None, 'ReorderInput', costs) == 'layout'
    assert tool.kind_of_kernel(None, 'Softmax', costs) == 'unmapped'
    assert tool.kind_of_kernel('se_expand', 'Conv', costs) == 'SE block'


def test_per_kind_sums_runs_and_counts_kernels(tool):
    costs = tool.graph_costs(_graph(tool))
    found = tool.per_kind({'a': ('dw', 'Conv', [1.0, 3.0, 2.0]),
                           'b': ('pw', 'Conv', [1.0, 1.0, 1.0]),
                           'c': (None, 'ReorderInput', [0.5, 0.5, 0.5]),
                           'd': (None, 'Softmax', [0.1, 0.1, 0.1])}, costs, 3)
    assert found['ms'] == pytest.approx({'depthwise conv': 2.0, 'pointwise conv': 1.0,
                                         'layout': 0.5, 'unmapped': 0.1})
    assert found['kernels']['layout'] == 1
    assert found['nodes'] == pytest.approx({'dw': 2.0, 'pw': 1.0})
    assert found['unmapped'] == ['Softmax d']


def test_static_export_computes_the_same(tool, tmp_path):
    """The static-shape export has fixed dims and the dynamic export's outputs."""
    import onnx
    import onnxruntime as ort
    import torch
    from torch import nn
    from mmrepghost.deploy.onnx import export_onnx
    model = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(8, 4)).eval()
    shape = (2, 3, 16, 16)
    static, dynamic = str(tmp_path / 's.onnx'), str(tmp_path / 'd.onnx')
    tool.export_static(model, static, shape)
    export_onnx(model, dynamic, shape)
    dims = onnx.load(static).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == list(shape)
    x = {'images': torch.randn(*shape).numpy()}
    out = [ort.InferenceSession(p, providers=['CPUExecutionProvider']).run(None, x)[0]
           for p in (static, dynamic)]
    np.testing.assert_allclose(out[0], out[1], rtol=1e-5, atol=1e-6)


def test_bad_runs_is_a_parser_error(tool, capsys):
    with pytest.raises(SystemExit):
        tool.main(['--runs', '3'])
    assert '--runs must be >= 5, got 3' in capsys.readouterr().err


def test_quick_run_writes_the_tables(tool, tmp_path):
    out = tmp_path / 'profile'
    assert tool.main(['--quick', '--out-dir', str(out)]) == 0
    with open(out / 'results.csv') as f:
        rows = list(csv.DictReader(f))
    networks = ('RepGhostNet 1.0x', 'MobileNetV4-conv-small', 'GhostNet 1.0x')
    latency = {r['variant']: r for r in rows if r['part'] == 'latency'}
    assert set(latency) == {
        'onnxruntime all', 'onnxruntime extended', 'onnxruntime basic',
        'onnxruntime all, spinning', 'onnxruntime all, static-shape export',
        'openvino static shape', 'openvino dynamic shape', 'pytorch eager NCHW',
        'pytorch eager channels-last', 'onnxruntime all, channels padded to 16',
        'openvino static shape, channels padded to 16',
        'onnxruntime all, shapes annotated (export_onnx)',
        'onnxruntime all, shapes annotated, channels padded to 16'}
    for r in latency.values():
        ms = {n: float(r[f'{n} ms']) for n in networks}
        assert all(v > 0 for v in ms.values())
        assert float(r['ours_vs_ghostnet']) == pytest.approx(
            ms['RepGhostNet 1.0x'] / ms['GhostNet 1.0x'], rel=1e-3)
        assert float(r['ours_vs_mnv4']) == pytest.approx(
            ms['RepGhostNet 1.0x'] / ms['MobileNetV4-conv-small'], rel=1e-3)
        # the peak probe ran in the same round-robin: ours' share of it, from the same rows
        assert float(r['measured_peak_gflops']) > 1
        assert float(r['ours_measured_peak_pct']) == pytest.approx(
            100 * float(r['ours_gflops']) / float(r['measured_peak_gflops']), rel=2e-2,
            abs=0.1)  # the CSV rounds the share to 0.1
    profile = [r for r in rows if r['part'] == 'profile']
    assert {(r['network'], r['runtime']) for r in profile} == {
        (n, rt) for n in networks + ('RepGhostNet 1.0x, static-shape export',
                                     'RepGhostNet 1.0x, channels padded to 16')
        for rt in ('onnxruntime all', 'onnxruntime extended', 'openvino')}
    ours = {(r['runtime'], r['kind']): r for r in profile if r['network'] == networks[0]}
    for runtime in ('onnxruntime all', 'openvino'):
        for kind in ('pointwise conv', 'depthwise conv', 'dense kxk conv', 'SE block',
                     'FC head'):
            assert float(ours[(runtime, kind)]['ms']) > 0, (runtime, kind)
            assert float(ours[(runtime, kind)]['mflops']) > 0, (runtime, kind)
        assert (runtime, 'unmapped') not in ours  # every kernel found its node or is layout
    # onnxruntime's NCHWc transformer inserts reorders, which only it reports
    assert float(ours[('onnxruntime all', 'layout')]['ms']) > 0
    assert ('onnxruntime extended', 'layout') not in ours
    static = {(r['runtime'], r['kind']): r for r in profile
              if r['network'] == 'RepGhostNet 1.0x, static-shape export'}
    # with static shapes, or the symbolic ones export_onnx records, onnxruntime fuses every
    # residual Add into a conv (tests/test_deploy/test_onnx_export.py: not without them)
    for found in (static, ours):
        assert ('onnxruntime all', 'elementwise') not in found or \
            found[('onnxruntime all', 'elementwise')]['kernels'] == '0'
    # MobileNetV4-conv-small has no SE block; all three have depthwise convs
    assert not any(r['network'] == networks[1] and r['kind'] == 'SE block' for r in profile)
    depthwise = [r for r in rows if r['part'] == 'depthwise']
    assert {r['network'] for r in depthwise} == set(networks)
    assert all(' dw ' in r['layer'] for r in depthwise)
    assert {r['simd_multiple'] for r in depthwise if r['network'] == networks[0]} == {
        'True', 'False'}
    report = (out / 'results.md').read_text()
    for heading in ('## Latency variants', '## Per-op profile by kind',
                    '## Depthwise convs of RepGhostNet 1.0x', '## Why'):
        assert heading in report
    assert 'ours minus theirs' in report and 'fusing the SE blocks' in report
    # the goal ratio: ours as shipped against GhostNet as its users export it, same run
    plain = latency['onnxruntime all']
    shipped = float(latency['onnxruntime all, shapes annotated (export_onnx)'][
        'RepGhostNet 1.0x ms'])
    assert (f'batch 1: ours as `shapes annotated (export_onnx)` / GhostNet 1.0x as '
            f'torch.onnx.export writes it (onnxruntime all): '
            f"{shipped / float(plain['GhostNet 1.0x ms']):.2f}x") in report
