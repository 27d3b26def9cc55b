"""Counter increases and histogram_quantile, against Prometheus's documented semantics."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh.observe.rates import counter_increase, histogram_quantile, increases
from mesh.observe.samples import Scrape, labels_of


def test_a_counter_grows_by_the_difference_and_a_drop_is_a_reset() -> None:
    assert counter_increase(10.0, 25.0) == 15.0
    assert counter_increase(10.0, 10.0) == 0.0
    assert counter_increase(100.0, 7.0) == 7.0  # restarted: it counted 7 since
    assert counter_increase(None, 4.0) == 4.0  # new series: counted from 0


def test_increases_are_per_series_of_the_later_scrape() -> None:
    a, b = labels_of({"code": "200"}), labels_of({"code": "500"})
    before = Scrape(0.0, {"x_total": {a: 10.0}})
    after = Scrape(5.0, {"x_total": {a: 3.0, b: 2.0}})
    assert increases(before, after, "x_total") == {a: 3.0, b: 2.0}
    assert increases(before, after, "missing") == {}


@given(st.lists(st.floats(min_value=0, max_value=1e9, allow_nan=False), min_size=1, max_size=20))
def test_increases_over_a_sequence_never_go_negative_and_sum_to_the_growth_without_resets(values: list[float]) -> None:
    steps = [counter_increase(None, values[0])] + [counter_increase(a, b) for a, b in itertools.pairwise(values)]
    assert all(step >= 0 for step in steps)
    if values == sorted(values):
        assert math.isclose(sum(steps), values[-1], rel_tol=1e-9, abs_tol=1e-6)


INF = math.inf


def test_quantile_interpolates_linearly_inside_the_bucket() -> None:
    # 10 observations ≤ 1, 10 more ≤ 2, none above: the median is the top of bucket 1, p75 halfway into bucket 2
    buckets = [(1.0, 10.0), (2.0, 20.0), (INF, 20.0)]
    assert histogram_quantile(0.5, buckets) == pytest.approx(1.0)
    assert histogram_quantile(0.75, buckets) == pytest.approx(1.5)
    # first bucket interpolates from 0
    assert histogram_quantile(0.25, buckets) == pytest.approx(0.5)


def test_quantile_in_the_inf_bucket_answers_the_highest_finite_bound() -> None:
    assert histogram_quantile(0.99, [(1.0, 1.0), (5.0, 2.0), (INF, 100.0)]) == 5.0


def test_quantile_edge_cases_follow_prometheus() -> None:
    buckets = [(1.0, 1.0), (INF, 1.0)]
    assert histogram_quantile(-0.1, buckets) == -INF
    assert histogram_quantile(1.1, buckets) == INF
    assert histogram_quantile(math.nan, buckets) is None
    assert histogram_quantile(0.5, [(1.0, 0.0), (INF, 0.0)]) is None  # no observations: NaN
    assert histogram_quantile(0.5, [(1.0, 3.0), (2.0, 5.0)]) is None  # no +Inf bucket
    assert histogram_quantile(0.5, [(INF, 3.0)]) is None  # a single bucket
    assert histogram_quantile(0.5, [(-1.0, 2.0), (INF, 2.0)]) == -1.0  # first bound ≤ 0 answers the bound
    # unordered input is sorted; a dip from float sums is made monotonic
    assert histogram_quantile(0.5, [(INF, 4.0), (2.0, 3.9999), (1.0, 4.0)]) == pytest.approx(0.5)


bounds = st.lists(st.floats(min_value=0.001, max_value=1e4), min_size=1, max_size=12, unique=True).map(sorted)


@given(bounds, st.data())
def test_quantiles_are_monotonic_in_q_and_stay_within_the_finite_bounds(
    upper: list[float], data: st.DataObject
) -> None:
    counts = data.draw(st.lists(st.integers(0, 1000), min_size=len(upper) + 1, max_size=len(upper) + 1))
    cumulative: list[float] = []
    running = 0
    for count in counts:
        running += count
        cumulative.append(float(running))
    buckets = list(zip([*upper, INF], cumulative, strict=False))
    qs = sorted(data.draw(st.lists(st.floats(0, 1), min_size=2, max_size=5)))
    answers = [histogram_quantile(q, buckets) for q in qs]
    if running == 0:
        assert answers == [None] * len(qs)
        return
    values = [a for a in answers if a is not None]
    assert len(values) == len(qs)
    assert all(0 <= v <= upper[-1] for v in values)
    assert all(a <= b + 1e-9 for a, b in itertools.pairwise(values))
