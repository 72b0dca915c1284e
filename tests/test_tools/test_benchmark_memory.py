"""tools/benchmark_memory.py --quick: trains through the real Runner and samples RSS."""
import csv
import re

import pytest

from tests.conftest import load_tool


def test_quick_memory_benchmark_samples_rss_and_reports_growth(tmp_path, capsys):
    out = tmp_path / 'memory'
    assert load_tool('benchmark_memory').main(['--quick', '--out-dir', str(out)]) == 0
    with open(out / 'memory.csv') as f:
        rows = list(csv.DictReader(f))
    # --quick: 20 iterations, a sample every 2, plus the first one
    assert [int(r['iteration']) for r in rows] == [1, *range(2, 21, 2)]
    assert all(float(r['process_mib']) > 100 for r in rows)  # torch + mmdet + a detector
    assert all(float(r['workers_mib']) > 0 for r in rows)  # the config's 2 loader workers
    report = (out / 'memory.md').read_text()
    growth = re.search(r'RSS growth from iteration 4 to 20: training process ([+-][0-9.]+)%, '
                       r'process \+ workers ([+-][0-9.]+)% \(goal < 5%: (flat|GROWING)\); '
                       r'process RSS slope after warm-up ([+-][0-9.]+) MiB per 100 iterations',
                       report)
    assert growth, report
    first = next(r for r in rows if r['iteration'] == '4')
    expected = 100 * (float(rows[-1]['process_mib']) / float(first['process_mib']) - 1)
    assert abs(float(growth.group(1)) - expected) < 0.01
    slope = load_tool('benchmark_memory').slope_per_100
    line = [dict(iteration=i, process_mib=100 + 0.5 * i) for i in (10, 20, 30)]
    assert slope(line) == pytest.approx(50.0)  # 0.5 MiB per iteration
    assert slope([dict(iteration=i, process_mib=7.0) for i in (1, 2, 3)]) == 0.0
    assert 'RSS growth' in capsys.readouterr().out
