"""Counter increases between two scrapes and ``histogram_quantile``, with Prometheus's semantics (pure)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from mesh.observe.samples import Labels, Scrape


def counter_increase(before: float | None, after: float) -> float:
    """How much a counter grew between two samples.

    A value lower than before is a counter reset (the process restarted and counts from 0 again):
    the increase is the new value, as Prometheus's ``rate``/``increase`` count it. A series absent
    from the earlier scrape (``before=None``) counts from 0: a sidecar creates its series at the
    first request, so all of its value was added in the window.
    """
    if before is None or after < before:
        return max(after, 0.0)
    return after - before


def increases(before: Scrape, after: Scrape, sample: str) -> dict[Labels, float]:
    """Each series of ``sample`` in ``after``: its increase since ``before``."""
    earlier = before.series(sample)
    return {labels: counter_increase(earlier.get(labels), value) for labels, value in after.series(sample).items()}


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """The ``q`` quantile of a histogram given as (upper bound, cumulative count) pairs.

    Prometheus's ``histogram_quantile``: the rank ``q·count`` is located in its bucket and
    interpolated linearly between the bucket's bounds (0 below the first bucket when that bucket's
    bound is positive); a rank in the +Inf bucket answers the highest finite bound. None where
    Prometheus answers NaN: no +Inf bucket, fewer than two buckets, or no observations.
    """
    if math.isnan(q):
        return None
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    ordered = sorted(buckets)
    if len(ordered) < 2 or not math.isinf(ordered[-1][0]):
        return None
    # Prometheus makes the cumulative counts monotonic (float sums may dip slightly).
    counts: list[float] = []
    for _, count in ordered:
        counts.append(max(count, counts[-1]) if counts else count)
    total = counts[-1]
    if total <= 0:
        return None
    rank = q * total
    index = next(i for i, count in enumerate(counts) if count >= rank)
    if index == len(ordered) - 1:
        return ordered[-2][0]
    upper = ordered[index][0]
    if index == 0 and upper <= 0:
        return upper
    lower = 0.0 if index == 0 else ordered[index - 1][0]
    below = 0.0 if index == 0 else counts[index - 1]
    inside = counts[index] - below
    if inside <= 0:
        return upper
    return lower + (upper - lower) * (rank - below) / inside


__all__ = ["counter_increase", "histogram_quantile", "increases"]
