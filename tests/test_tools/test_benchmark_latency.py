"""tools/benchmark_latency.py --quick: every part runs, tables and plot are written."""
import csv

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
    assert 'GFLOP/s' in report
    for goal in ('onnxruntime, 1 thread, batch 1: deployed RepGhostNet 1.0x / GhostNet 1.0x: ',
                 'PyTorch eager, 1 thread, batch 1: deployed / train structure (NCHW): ',
                 'each in its faster layout: ',
                 'training step, with / without the BN re-parameterization branch: '):
        assert goal in report, goal
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
