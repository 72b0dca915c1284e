"""mmrepghost.utils.timing: medians of timed runs, interleaved across callables."""
import time

import pytest

from mmrepghost.utils.timing import measure_interleaved, measure_latency


def test_interleaved_runs_alternate_and_summaries_are_ordered():
    calls = []
    timed = measure_interleaved({'a': lambda: calls.append('a'),
                                 'b': lambda: (calls.append('b'), time.sleep(0.002))},
                                runs=4, warmup=1)
    assert calls == ['a', 'b'] * 5  # one warm-up round, then four timed rounds
    for lat in timed.values():
        assert lat.runs == 4 and 0 <= lat.min_ms <= lat.median_ms <= lat.max_ms
    assert timed['b'].median_ms >= 2.0 > timed['a'].median_ms


def test_median_of_an_even_number_of_runs_is_the_mean_of_the_middle_two(monkeypatch):
    ticks = iter([0, 1e-3, 0, 3e-3, 0, 2e-3, 0, 10e-3])  # 1, 3, 2, 10 ms
    monkeypatch.setattr(time, 'perf_counter', lambda: next(ticks))
    lat = measure_latency(lambda: None, runs=4, warmup=0)
    assert lat.median_ms == pytest.approx(2.5) and lat.min_ms == pytest.approx(1.0)
    assert lat.max_ms == pytest.approx(10.0)


@pytest.mark.parametrize('runs,warmup', [(0, 5), (3, -1)])
def test_rejects_bad_counts(runs, warmup):
    with pytest.raises(ValueError, match=f'got runs={runs}, warmup={warmup}'):
        measure_latency(lambda: None, runs=runs, warmup=warmup)
