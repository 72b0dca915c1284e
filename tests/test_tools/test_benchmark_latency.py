"""tools/benchmark_latency.py --quick: every part runs, tables and plot are written."""
import builtins
import csv

import re

import numpy as np
import pytest

from tests.conftest import load_tool


def test_quick_benchmark_writes_tables_and_plot(tmp_path, capsys):
    out = tmp_path / 'bench'
    assert load_tool('benchmark_latency').main(['--quick', '--out-dir', str(out)]) == 0
    with open(out / 'results.csv') as f:
        rows = list(csv.DictReader(f))
    cases = {(r['part'], r['model'], r['structure'], r['backend']) for r in rows}
    ours = ('models', 'RepGhostNet 1.0x', 'deployed')
    for backend in ('pytorch', 'torch.compile', 'onnxruntime', 'openvino', 'onnxruntime int8',
                    'openvino int8', 'openvino (dynamic shape)'):
        assert ours + (backend, ) in cases, backend
    for backend in ('pytorch', 'onnxruntime', 'openvino'):
        for model, structure in (('RepGhostNet 1.0x', 'train'), ('GhostNet 1.0x', '-'),
                                 ('MobileNetV4-conv-small', '-')):
            assert ('models', model, structure, backend) in cases
    compiled = [r for r in rows if r['backend'] == 'torch.compile']
    assert len(compiled) == 1 and float(compiled[0]['compile_s']) > 0
    end2end = {(r['structure'], r['backend']) for r in rows if r['part'] == 'end2end'}
    assert end2end == {('end-to-end graph', 'onnxruntime'), ('end-to-end graph', 'openvino'),
                       ('raw graph + numpy post-processing', 'onnxruntime'),
                       ('raw graph + numpy post-processing', 'openvino'),
                       ('raw graph only', 'onnxruntime')}
    assert {r['input'] for r in rows if r['part'] == 'end2end'} == {'128x128'}
    table1 = {r['structure'] for r in rows if r['part'] == 'table1'}
    assert table1 == {'concat', 'add'}
    assert all('32 ops' in r['model'] for r in rows if r['part'] == 'table1')
    assert {r['model'] for r in rows if r['part'] == 'detectors'} == {
        'RetinaNet-RepGhostNet 1.3x', 'RetinaNet-MobileNetV2'}
    assert {r['structure'] for r in rows if r['part'] == 'training'} == {
        f'{branch}, {variant}' for branch in ('with BN branch (paper)', 'no re-param branch')
        for variant in ('eager fp32', 'eager bf16 autocast')}
    assert {r['structure'] for r in rows if r['part'] == 'layouts'} == {
        'train, NCHW', 'deployed, NCHW', 'train, channels_last', 'deployed, channels_last'}
    for r in rows:
        assert 0 < float(r['min_ms']) <= float(r['median_ms']) <= float(r['max_ms'])
    report = (out / 'results.md').read_text()
    assert report.startswith('# CPU latency benchmark')
    assert re.search(r'- versions: Python [\d.]+, torch 2\.', report)
    assert '| network | structure | top-1 | pytorch | torch.compile | onnxruntime |' in report
    assert '| runtime | batch | Pareto front (fastest first) |' in report
    assert '- MobileNetV4-conv-small (timm `mobilenetv4_conv_small`): 73.76: timm ' in report
    assert '- Deployed RepGhostNet 1.0x, onnxruntime, 1 thread, batch 1:' in report
    assert '- Deployed RepGhostNet 1.0x, openvino, 1 thread, batch 1:' in report
    # ours' share of the peak probe timed in the same round-robin, and of the nominal peak
    probe = [r for r in rows if r['part'] == 'peak']
    assert [(r['backend'], r['batch']) for r in probe] == [('onnxruntime', '1')]
    efficiency = re.search(r'- Deployed RepGhostNet 1\.0x, onnxruntime, 1 thread, batch 1: '
                           r'([\d.]+) GFLOP/s, (\d+)% of the measured peak ([\d.]+) GFLOP/s '
                           r'\(peak probe: dense 3x3 conv.*% of the nominal peak', report)
    assert efficiency, report
    achieved, share, peak = map(float, efficiency.groups())
    # the report rounds to 1 GFLOP/s and 1%, the CSV to 0.1 GFLOP/s
    assert peak == pytest.approx(float(probe[0]['gflops']), abs=0.6)
    assert share == pytest.approx(100 * achieved / peak, abs=1.0)
    for goal in ('onnxruntime, 1 thread, batch 1: deployed RepGhostNet 1.0x / GhostNet 1.0x: ',
                 'openvino, 1 thread, batch 1: deployed RepGhostNet 1.0x / '
                 'MobileNetV4-conv-small: ',
                 'deployed RepGhostNet 1.0x, batch 1: torch.compile / PyTorch eager: ',
                 'deployed RepGhostNet 1.0x, batch 1: onnxruntime int8 / fp32: ',
                 'PyTorch eager, 1 thread, batch 1: deployed / train structure (NCHW): ',
                 'each in its faster layout: ',
                 'training step (eager fp32), with / without the BN re-parameterization '
                 'branch: ',
                 'training step with the BN branch: eager bf16 autocast / eager fp32: ',
                 'OpenVINO / onnxruntime, 1 thread, batch 1: deployed RepGhostNet 1.0x: ',
                 'deployed RepGhostNet 1.0x, dynamic / static input shape: ',
                 'end2end, onnxruntime: end-to-end graph / raw graph + numpy post-processing: ',
                 'end2end, OpenVINO: end-to-end graph / raw graph + numpy post-processing: '):
        assert goal in report, goal
    # the agreement check ran (in both runtimes) on an input where NMS has work to do
    agreed = re.search(r'end2end, 128x128: score_thr 0\.05: (\d+) candidates enter NMS, '
                       r"(\d+) detections; the end-to-end graph's detections agree with the "
                       r'numpy post-processing.* in onnxruntime and OpenVINO', report)
    assert agreed and int(agreed[1]) > int(agreed[2]) > 0, report[-2000:]
    assert re.search(r'end2end profile .* TopK \d+\.\d+ ms', report)
    # one plot per runtime with at least two networks (--quick compiles and quantizes one)
    for name in ('pareto.png', 'pareto_pytorch.png', 'pareto_onnxruntime.png',
                 'pareto_openvino.png'):
        assert (out / name).read_bytes()[:8] == b'\x89PNG\r\n\x1a\n', name
    assert not (out / 'pareto_torch_compile.png').exists()


def test_layout_comparison_refuses_networks_that_differ():
    check_same_outputs = load_tool('benchmark_latency').check_same_outputs
    same = {'a': lambda x: (x.mean((2, 3)), ), 'b': lambda x: (x.mean((2, 3)) + 1e-7, )}
    check_same_outputs(same)
    differ = {'a': same['a'], 'b': lambda x: (x.mean((2, 3)) * 1.01, )}
    with pytest.raises(RuntimeError, match=r"b differs from a by .* not timing different"):
        check_same_outputs(differ)


def test_table1_records_ghostnets_concatenations_without_rebinding_torch_cat():
    import torch
    original = torch.cat
    shapes = load_tool('benchmark_latency').ghost_concat_shapes()
    assert torch.cat is original
    # GhostNet 1.0x: 16 bottlenecks x 2 Ghost modules, each concatenating primary + cheap maps
    assert len(shapes) == 32 and all(len(pair) == 2 for pair in shapes)
    assert shapes[0] == [(1, 8, 112, 112), (1, 8, 112, 112)]


def test_numpy_postprocess_decodes_and_suppresses_as_mmdet():
    """The reference post-processing of the end2end part: mmdet's delta2bbox and batched_nms."""
    import torch
    from mmcv.ops import batched_nms
    from mmdet.models.task_modules.coders.delta_xywh_bbox_coder import delta2bbox
    tool = load_tool('benchmark_latency')
    post = object.__new__(tool.NumpyDensePostprocess)
    post.means = np.array([0.1, -0.1, 0.0, 0.2], np.float32)
    post.stds = np.array([0.5, 0.5, 1.0, 1.0], np.float32)
    post.max_ratio, post.iou_thr, post.max_per_img = abs(np.log(16 / 1000)), 0.5, 30
    gen = np.random.default_rng(0)
    # x1 y1 x2 y2: the two corners sorted per coordinate
    priors = np.sort(gen.uniform(0, 100, (200, 2, 2)), axis=1).reshape(200, 4).astype(np.float32)
    deltas = gen.normal(0, 2, (200, 4)).astype(np.float32)
    expected = delta2bbox(torch.from_numpy(priors), torch.from_numpy(deltas), post.means,
                          post.stds)
    boxes = post.decode(priors, deltas)
    np.testing.assert_allclose(boxes, expected.numpy(), rtol=1e-5, atol=1e-4)
    # 10 clusters of 20 jittered 30-pixel boxes, 3 classes: NMS has to suppress
    corners = np.repeat(gen.uniform(0, 200, (10, 2)), 20, axis=0) + gen.normal(0, 3, (200, 2))
    boxes = np.concatenate([corners, corners + 30], axis=1).astype(np.float32)
    scores = gen.uniform(0, 1, 200).astype(np.float32)
    labels = gen.integers(0, 3, 200)
    keep = post.nms(boxes, scores, labels)
    _, expected_keep = batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores),
                                   torch.from_numpy(labels), dict(iou_threshold=0.5))
    assert keep.tolist() == expected_keep[:30].tolist()
    assert len(keep) == 30 and len(expected_keep) < 200  # it suppressed boxes


def test_openvino_missing_skips_only_its_column(monkeypatch, capsys, tmp_path):
    tool = load_tool('benchmark_latency')
    real_import = builtins.__import__

    def no_openvino(name, *args, **kwargs):
        if name == 'openvino' or name.startswith('openvino.'):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, '__import__', no_openvino)
    assert tool.openvino_core() is None
    assert 'pip install openvino' in capsys.readouterr().out
    from torch import nn
    timed, _ = tool.time_models({('tiny', '-'): nn.Conv2d(3, 4, 3)}, (1, 3, 32, 32), 1, 5,
                                str(tmp_path), openvino=tool.openvino_core())
    assert {backend for _, backend in timed} == {'pytorch', 'onnxruntime'}


def _row(model, backend, batch, ms, structure='deployed'):
    return dict(part='models', model=model, structure=structure, backend=backend, threads=1,
                batch=batch, input='224x224', median_ms=ms, min_ms=ms, max_ms=ms)


def test_front_table_says_which_widths_are_on_the_front_and_how_far_the_others_are():
    tool = load_tool('benchmark_latency')
    rows = [_row('RepGhostNet 0.5x', 'onnxruntime', 1, 1.0),      # 66.9: fastest
            _row('RepGhostNet 1.0x', 'onnxruntime', 1, 2.5),      # 74.2
            _row('RepGhostNet 1.0x', 'onnxruntime', 1, 9.0, 'train'),  # not a deployed point
            _row('MobileNetV4-conv-small', 'onnxruntime', 1, 2.0),  # 73.76
            _row('GhostNetV3 1.0x', 'onnxruntime', 1, 2.2),       # 76.94: dominates 1.0x
            _row('timm RepGhostNet 1.0x', 'onnxruntime', 1, 0.5),  # reference: not a peer
            _row('GhostNet 1.0x', 'openvino', 8, 4.0), _row('RepGhostNet 1.0x', 'openvino', 8, 3.0)]
    lines = tool.front_lines(rows)
    assert lines[2] == ('| onnxruntime | 1 | RepGhostNet 0.5x, MobileNetV4-conv-small, '
                        'GhostNetV3 1.0x | 0.5x | 1.0x: 1.14x GhostNetV3 1.0x, -2.7 vs '
                        'GhostNetV3 1.0x |')
    assert lines[3] == '| openvino | 8 | RepGhostNet 1.0x | 1.0x | - |'
    assert len(lines) == 4


def test_time_models_records_a_runtime_that_fails_and_keeps_the_others(monkeypatch, tmp_path):
    tool = load_tool('benchmark_latency')
    import mmrepghost.deploy.inductor as inductor
    from torch import nn

    def broken(module):
        raise RuntimeError('inductor broke\nsecond line')

    monkeypatch.setattr(inductor, 'compile_inductor', broken)
    notes = []
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 1))
    timed, compile_s = tool.time_models({('tiny', '-'): model}, (1, 3, 32, 32), 1, 5,
                                        str(tmp_path), compiled=[('tiny', '-')],
                                        int8=[('tiny', '-')], notes=notes)
    assert {backend for _, backend in timed} == {'pytorch', 'onnxruntime', 'onnxruntime int8'}
    assert compile_s == {}
    assert notes == ["torch.compile failed for ('tiny', '-') at (1, 3, 32, 32): RuntimeError: "
                     'inductor broke']


def test_environment_lines_name_the_versions_and_missing_packages():
    import torch

    from mmrepghost.utils.reports import environment_lines
    date, machine, versions = environment_lines(['torch', 'no-such-distribution'])
    assert re.fullmatch(r'date: \d{4}-\d\d-\d\d \d\d:\d\d UTC', date)
    assert 'logical cores' in machine and 'SIMD: ' in machine
    assert f'torch {torch.__version__.split("+")[0]}' in versions
    assert versions.endswith('no-such-distribution not installed')


def test_time_models_compiles_every_network_into_its_own_graph(tmp_path, monkeypatch):
    """Compiled directly, all networks would share one dynamo cache: past its limit of 8
    graphs the rest would silently run eagerly, and every call would scan the others' guards.
    (Dynamo's caching is the backend's business only after a graph is captured: the eager
    backend keeps the test fast.)"""
    import torch
    from torch import nn
    from torch._dynamo.utils import counters

    import mmrepghost.deploy.inductor as inductor
    tool = load_tool('benchmark_latency')

    def compile_eager(fn):
        compiled = torch.compile(fn, backend='eager')

        def run(*args):
            with torch.no_grad():
                return compiled(*args)
        return run

    monkeypatch.setattr(inductor, 'compile_inductor', compile_eager)
    models = {(f'net{i}', '-'): nn.Sequential(nn.Conv2d(3, 4 + i, 3), nn.ReLU()).eval()
              for i in range(10)}
    assert torch._dynamo.config.recompile_limit < len(models)
    before = counters['stats']['unique_graphs']
    timed, compile_s = tool.time_models(models, (1, 3, 16, 16), 1, 5, str(tmp_path),
                                        compiled=list(models))
    # one graph each, compiled once (the timed calls found them: no recompilation)
    assert counters['stats']['unique_graphs'] - before == len(models)
    assert set(compile_s) == set(models)
    assert sum(backend == 'torch.compile' for _, backend in timed) == len(models)


def test_a_recompiled_network_is_refused():
    import torch
    from torch import nn
    tool = load_tool('benchmark_latency')
    entry = tool.own_entry(nn.Conv2d(3, 4, 3).eval(), 'twice')
    run = torch.compile(entry, backend='eager')
    with torch.no_grad():
        run(torch.randn(1, 3, 8, 8))
        tool.check_one_graph_each({'once': entry.__code__})
        run(torch.randn(2, 3, 9, 9))  # another shape: a second graph
    with pytest.raises(RuntimeError, match=r"torch.compile kept 2 graphs for twice, not 1"):
        tool.check_one_graph_each({'twice': entry.__code__})
