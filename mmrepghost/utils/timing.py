"""Wall-clock latency of a callable: warm-up, then the median (min, max) of repeated runs."""
import time
from typing import Callable, NamedTuple


class Latency(NamedTuple):
    median_ms: float
    min_ms: float
    max_ms: float
    runs: int


def measure_latency(fn: Callable[[], object], runs: int = 30, warmup: int = 5) -> Latency:
    """Call ``fn`` ``warmup`` times untimed, then ``runs`` times timed (``perf_counter``)."""
    if runs < 1 or warmup < 0:
        raise ValueError(f'runs must be >= 1 and warmup >= 0, got runs={runs}, '
                         f'warmup={warmup}')
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    middle = len(times) // 2
    median = times[middle] if len(times) % 2 else (times[middle - 1] + times[middle]) / 2
    return Latency(median, times[0], times[-1], len(times))
