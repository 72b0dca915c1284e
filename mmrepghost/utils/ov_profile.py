"""OpenVINO's per-node profiling (``PERF_COUNT``), read as what it is.

An infer request's ``get_profiling_info()`` reports, for each node, its **mean time since the
model was compiled**, not the last inference's (checked with OpenVINO 2026.4: after 10
inferences of 17 ms, ten of 0.14 ms moved the reported total from 17.3 to 8.7 ms step by
step). So one inference's time per node cannot be read (differencing the means amplifies
their microsecond rounding by the number of runs); the mean over a span of inferences can,
from a snapshot before and one after it.
"""
from typing import Dict, List, NamedTuple, Tuple

Snapshot = Dict[str, Tuple[str, float]]  # {node name: (node type, mean seconds so far)}


class NodeTime(NamedTuple):
    node_name: str
    node_type: str
    ms: float


def snapshot(request) -> Snapshot:
    """The executed nodes' mean times so far of an infer request compiled with
    ``PERF_COUNT``."""
    return {e.node_name: (e.node_type, e.real_time.total_seconds())
            for e in request.get_profiling_info() if e.status.name == 'EXECUTED'}


def mean_times(before: Snapshot, after: Snapshot, runs_before: int, runs: int
               ) -> List[NodeTime]:
    """Each node's mean ms over the ``runs`` inferences between ``before`` (taken after
    ``runs_before`` inferences since compilation) and ``after``."""
    if runs < 1:
        raise ValueError(f'runs must be >= 1, got {runs}')
    total = runs_before + runs
    return [NodeTime(name, kind,
                     max(0.0, (total * mean - runs_before * before.get(name, (kind, 0.0))[1])
                         / runs * 1e3))
            for name, (kind, mean) in after.items()]
