"""Wall-clock latency of callables: warm-up, then the median (min, max) of repeated runs."""
import time
from typing import Callable, Dict, NamedTuple


class Latency(NamedTuple):
    median_ms: float
    min_ms: float
    max_ms: float
    runs: int


def measure_latency(fn: Callable[[], object], runs: int = 30, warmup: int = 5) -> Latency:
    """Call ``fn`` ``warmup`` times untimed, then ``runs`` times timed (``perf_counter``)."""
    return measure_interleaved({'fn': fn}, runs, warmup)['fn']


def measure_interleaved(fns: Dict[str, Callable[[], object]], runs: int = 30,
                        warmup: int = 5) -> Dict[str, Latency]:
    """Time several callables round-robin: one run of each, ``runs`` rounds.

    Callables compared in one table share every moment of the measurement, so slow drift of
    a shared machine (other jobs, clock changes) lands on all of them alike instead of on
    whichever one happened to run at the time.
    """
    if runs < 1 or warmup < 0:
        raise ValueError(f'runs must be >= 1 and warmup >= 0, got runs={runs}, '
                         f'warmup={warmup}')
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: _summary(values) for name, values in times.items()}


def _summary(times) -> Latency:
    times = sorted(times)
    middle = len(times) // 2
    median = times[middle] if len(times) % 2 else (times[middle - 1] + times[middle]) / 2
    return Latency(median, times[0], times[-1], len(times))
