"""The latency/accuracy Pareto front of a set of networks, and how far a network is off it."""
from typing import Dict, List, NamedTuple, Optional, Tuple

Point = Tuple[float, float]  # (latency ms, top-1 %)


def pareto_front(points: Dict[str, Point]) -> List[str]:
    """The names no other point dominates (as fast or faster and as accurate or more, one of
    the two strictly), fastest first."""
    front = [name for name, (ms, top1) in points.items()
             if not any(o_ms <= ms and o_top1 >= top1 and (o_ms, o_top1) != (ms, top1)
                        for other, (o_ms, o_top1) in points.items() if other != name)]
    return sorted(front, key=lambda name: points[name])


class Gap(NamedTuple):
    """How far a point is off the front: ``slower`` (its latency / that of ``faster_peer``,
    the fastest front member at least as accurate) and ``less_top1`` (top-1 points below
    ``better_peer``, the most accurate front member at most as slow). A point off the front is
    dominated by a front member, so both exist."""
    slower: float
    faster_peer: str
    less_top1: float
    better_peer: str


def front_gap(name: str, points: Dict[str, Point]) -> Optional[Gap]:
    """None if ``name`` is on the front of ``points``, else its :class:`Gap`."""
    front = pareto_front(points)
    if name in front:
        return None
    ms, top1 = points[name]
    faster = min((n for n in front if points[n][1] >= top1), key=lambda n: points[n][0])
    better = max((n for n in front if points[n][0] <= ms), key=lambda n: points[n][1])
    return Gap(ms / points[faster][0], faster, points[better][1] - top1, better)


def latency_at(top1: float, line: Dict[str, Point]) -> Optional[float]:
    """The latency of the family ``line`` (e.g. the widths of one network) at ``top1``,
    linearly interpolated between its two points around it on its own front (its
    undominated points); None outside the range of its top-1."""
    front = [line[name] for name in pareto_front(line)]
    for (ms_a, top1_a), (ms_b, top1_b) in zip(front, front[1:]):
        if top1_a <= top1 <= top1_b:
            share = (top1 - top1_a) / (top1_b - top1_a) if top1_b > top1_a else 0.0
            return ms_a + share * (ms_b - ms_a)
    return None
