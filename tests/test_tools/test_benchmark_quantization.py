"""tools/benchmark_quantization.py --quick: the speed table, its ratios and goal lines, and an
accuracy part that says what it could not find instead of failing."""
import csv

import pytest

from tests.conftest import load_tool


def test_quick_benchmark_writes_the_int8_tables(tmp_path, capsys):
    out = tmp_path / 'bench'
    argv = ['--quick', '--runs', '3', '--out-dir', str(out), '--study-dir',
            str(tmp_path / 'no_study')]
    assert load_tool('benchmark_quantization').main(argv) == 0
    with open(out / 'results.csv') as f:
        rows = list(csv.DictReader(f))
    speed = [r for r in rows if r['part'] == 'speed']
    networks = {r['network'] for r in speed}
    assert networks == {'RepGhostNet 1.0x classifier', 'RetinaNet-RepGhostNet 1.0x backbone+FPN'}
    for network in networks:
        variants = {r['variant']: r for r in speed if r['network'] == network}
        assert set(variants) == {'onnxruntime fp32', 'onnxruntime int8',
                                 'onnxruntime int8 auto-exclude'}
        fp32 = float(variants['onnxruntime fp32']['median_ms'])
        for r in variants.values():  # every ratio is to the fp32 median of the same loop
            assert float(r['ratio']) == pytest.approx(float(r['median_ms']) / fp32)
    text = (out / 'results.md').read_text()
    assert text.count('best onnxruntime int8') == 2 and '<= 0.65x' in text
    assert 'no_study' in text and 'skipped' in text  # the accuracy part says what is missing
    assert '--auto-exclude kept' in text
