"""mmrepghost.utils.pareto: the front and the distance to it, against hand-worked sets."""
import pytest

from mmrepghost.utils.pareto import Gap, front_gap, latency_at, pareto_front

# (ms, top-1): a is fastest, c is best; b is dominated by d (slower and less accurate)
POINTS = {'a': (1.0, 70.0), 'b': (3.0, 72.0), 'c': (4.0, 78.0), 'd': (2.0, 74.0),
          'e': (5.0, 77.0)}


def test_front_is_the_undominated_points_fastest_first():
    assert pareto_front(POINTS) == ['a', 'd', 'c']


def test_equal_points_both_stay_on_the_front_and_ties_on_one_axis_dominate():
    assert pareto_front({'x': (1.0, 70.0), 'y': (1.0, 70.0)}) == ['x', 'y']
    # same latency, less accurate: dominated; same accuracy, slower: dominated
    assert pareto_front({'x': (1.0, 70.0), 'y': (1.0, 69.0), 'z': (2.0, 70.0)}) == ['x']


def test_gap_names_the_front_points_it_is_measured_against():
    assert front_gap('d', POINTS) is None
    # b: 72 % at 3 ms; the fastest front point with >= 72 % is d (2 ms): 1.5x; the most
    # accurate front point at <= 3 ms is d too (74 %): 2 points more top-1
    assert front_gap('b', POINTS) == Gap(1.5, 'd', 2.0, 'd')
    # e: 77 % at 5 ms; c (4 ms, 78 %) is both the faster and the more accurate one
    gap = front_gap('e', POINTS)
    assert gap.slower == pytest.approx(1.25) and gap.faster_peer == 'c'
    assert gap.less_top1 == pytest.approx(1.0) and gap.better_peer == 'c'


def test_every_point_off_the_front_has_both_partners_on_it():
    import random
    rng = random.Random(0)
    points = {str(i): (rng.uniform(1, 10), rng.uniform(60, 80)) for i in range(40)}
    front = pareto_front(points)
    for name in set(points) - set(front):
        gap = front_gap(name, points)
        assert gap.faster_peer in front and gap.better_peer in front
        assert gap.slower >= 1 and gap.less_top1 >= 0
        assert points[gap.faster_peer][1] >= points[name][1]
        assert points[gap.better_peer][0] <= points[name][0]


def test_latency_at_interpolates_along_the_family_front():
    line = {'0.5x': (2.0, 66.0), '0.8x': (3.0, 72.0), '1.0x': (3.5, 74.0),
            'slow': (5.0, 73.0)}  # dominated: not part of the family's curve
    assert latency_at(73.0, line) == pytest.approx(3.25)
    assert latency_at(66.0, line) == pytest.approx(2.0)
    assert latency_at(74.0, line) == pytest.approx(3.5)
    assert latency_at(75.0, line) is None and latency_at(60.0, line) is None
