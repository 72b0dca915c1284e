"""tools/benchmark_latency.py --quick: every part runs, tables and plot are written."""
import csv

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
    for r in rows:
        assert 0 < float(r['min_ms']) <= float(r['median_ms']) <= float(r['max_ms'])
    report = (out / 'results.md').read_text()
    assert report.startswith('| part | model |')
    assert 'Deployed RepGhostNet 1.0x, onnxruntime, 1 thread, batch 1:' in report
    assert 'GFLOP/s' in report
    assert (out / 'latency_vs_accuracy.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
