"""Peak-EWMA power of two choices, as Linkerd balances: latency-aware and O(1) per pick.

Two distinct random candidates; the one with the lower cost wins, where cost is Linkerd's
``ewma_latency * (in_flight + 1)`` from the shared ``LoadTracker`` (see lb/load.py for how the
estimate moves), divided by the endpoint's weight so weight 2 looks half as loaded. The estimate is
decayed to "now" by the injected clock at each comparison, so an endpoint that was slow long ago
is tried again.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import exp

from lb.base import BalancerBase, BuildInputs
from lb.endpoint import Endpoint, PickContext


class PeakEwma(BalancerBase):
    kind = "peak_ewma"

    def __init__(
        self, endpoints: Sequence[Endpoint], candidates: tuple[Endpoint, ...], in_panic: bool, inputs: BuildInputs
    ) -> None:
        super().__init__(endpoints, candidates, in_panic, inputs)
        self._count = len(candidates)
        self._random = inputs.rng.random
        self._clock = inputs.clock
        self._decay_s = inputs.spec.ewma_decay_s
        self._loads = [inputs.load.slot(e.key) for e in candidates]
        self._inverse_weights = [1.0 / e.weight for e in candidates]

    def _choose(self, ctx: PickContext) -> Endpoint:
        count = self._count
        if count == 1:
            return self.candidates[0]
        rand = self._random
        first = int(rand() * count)
        second = int(rand() * (count - 1))
        if second >= first:
            second += 1  # a distinct second choice
        return self.candidates[self._cheaper(first, second, self._clock())]

    def _choose_avoiding(self, ctx: PickContext, exclude: frozenset[str]) -> Endpoint:
        allowed = self._allowed(exclude)
        if len(allowed) == 1:
            return self.candidates[allowed[0]]
        rand = self._random
        first = int(rand() * len(allowed))
        second = int(rand() * (len(allowed) - 1))
        if second >= first:
            second += 1
        return self.candidates[self._cheaper(allowed[first], allowed[second], self._clock())]

    def _cheaper(self, first: int, second: int, now: float) -> int:
        # EndpointLoad.ewma_at written out: this runs twice per request.
        decay_s = self._decay_s
        a = self._loads[first]
        b = self._loads[second]
        elapsed = now - a.stamp
        cost_a = (a.ewma_s * exp(-elapsed / decay_s) if elapsed > 0 else a.ewma_s) * (a.active + 1)
        elapsed = now - b.stamp
        cost_b = (b.ewma_s * exp(-elapsed / decay_s) if elapsed > 0 else b.ewma_s) * (b.active + 1)
        inverse_weights = self._inverse_weights
        return first if cost_a * inverse_weights[first] <= cost_b * inverse_weights[second] else second
