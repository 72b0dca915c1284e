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
    for structure in ('train', 'deployed'):
        for backend in ('pytorch', 'onnxruntime'):
            assert ('models', 'RepGhostNet 1.0x', structure, backend) in cases
    assert ('models', 'GhostNet 1.0x', '-', 'onnxruntime') in cases
    # OpenVINO fp32, static and (deployed 1.0x only) dynamic input shape
    for model, structure in (('RepGhostNet 1.0x', 'train'), ('RepGhostNet 1.0x', 'deployed'),
                             ('GhostNet 1.0x', '-')):
        assert ('models', model, structure, 'openvino') in cases
    assert ('models', 'RepGhostNet 1.0x', 'deployed', 'openvino (dynamic shape)') in cases
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
        'with BN branch (paper)', 'no re-param branch'}
    assert {r['structure'] for r in rows if r['part'] == 'layouts'} == {
        'train, NCHW', 'deployed, NCHW', 'train, channels_last', 'deployed, channels_last'}
    for r in rows:
        assert 0 < float(r['min_ms']) <= float(r['median_ms']) <= float(r['max_ms'])
    report = (out / 'results.md').read_text()
    assert report.startswith('| part | model |')
    assert '- Deployed RepGhostNet 1.0x, onnxruntime, 1 thread, batch 1:' in report
    assert '- Deployed RepGhostNet 1.0x, openvino, 1 thread, batch 1:' in report
    assert 'GFLOP/s' in report
    for goal in ('onnxruntime, 1 thread, batch 1: deployed RepGhostNet 1.0x / GhostNet 1.0x: ',
                 'PyTorch eager, 1 thread, batch 1: deployed / train structure (NCHW): ',
                 'each in its faster layout: ',
                 'training step, with / without the BN re-parameterization branch: ',
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
    assert (out / 'latency_vs_accuracy.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


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
    timed = tool.time_models({('tiny', '-'): nn.Conv2d(3, 4, 3)}, (1, 3, 32, 32), 1, 5,
                             str(tmp_path), openvino=tool.openvino_core())
    assert {backend for _, backend in timed} == {'pytorch', 'onnxruntime'}
