"""``build_balancer``: the one way to get a balancer for a policy and an endpoint set.

Call it on every endpoint-set update and swap the result in with one assignment; it builds every
structure (schedule, ring, table, cumulative weights) once, so picks never rebuild anything.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence

from lb.base import Balancer, BalancerBase, BuildInputs, NoEndpoints, select_candidates
from lb.endpoint import Endpoint
from lb.least_request import LeastRequest
from lb.load import LoadTracker
from lb.maglev import Maglev
from lb.peak_ewma import PeakEwma
from lb.random_pick import RandomPick
from lb.ring_hash import RingHash
from lb.round_robin import RoundRobin
from lb.spec import PolicySpec
from lb.weighted_round_robin import WeightedRoundRobin

POLICIES: dict[str, type[BalancerBase]] = {
    cls.kind: cls for cls in (RoundRobin, WeightedRoundRobin, RandomPick, LeastRequest, PeakEwma, RingHash, Maglev)
}


def build_balancer(
    spec: PolicySpec,
    endpoints: Sequence[Endpoint],
    *,
    load: LoadTracker,
    rng: random.Random,
    clock: Callable[[], float] = time.monotonic,
) -> Balancer:
    """A balancer for ``endpoints`` under ``spec``.

    ``load`` is the cluster's tracker, kept across rebuilds (least_request and peak_ewma read it;
    a peak_ewma spec sets its decay period and turns latency tracking on, any other spec turns it
    off). ``rng`` and ``clock`` are injected so tests and benchmarks are repeatable; pass the same
    clock the tracker was made with.
    Raises ``ValueError`` for an invalid spec or duplicate endpoint keys.
    """
    spec.validate()
    if len({e.key for e in endpoints}) != len(endpoints):
        seen: set[str] = set()
        for endpoint in endpoints:
            if endpoint.key in seen:
                raise ValueError(f"endpoints: duplicate key {endpoint.key!r}")
            seen.add(endpoint.key)
    candidates, in_panic = select_candidates(endpoints, spec.panic_threshold)
    load.track_latency = spec.kind == "peak_ewma"
    if load.track_latency:
        load.decay_s = spec.ewma_decay_s
    if not candidates:
        return NoEndpoints(endpoints)
    return POLICIES[spec.kind](endpoints, candidates, in_panic, BuildInputs(spec, load, rng, clock))
