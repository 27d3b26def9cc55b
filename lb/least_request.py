"""Least request, as Envoy's LEAST_REQUEST.

Equal weights: power of two choices. ``choice_count`` random candidates (two distinct ones for the
default 2), the one with the fewest requests in flight wins; O(1) and it avoids the herding that
"globally least loaded" causes when many proxies see the same counts.

Unequal weights: earliest-deadline-first weighted round robin whose weight is recomputed each time
an endpoint is scheduled, ``weight / (active + 1) ** active_request_bias``; so weights are honoured
when load is even and busy endpoints are scheduled less. Bias 0 is plain weighted round robin.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

from lb.base import BalancerBase, BuildInputs
from lb.endpoint import Endpoint, PickContext
from lb.load import EndpointLoad


class LeastRequest(BalancerBase):
    kind = "least_request"

    def __init__(
        self, endpoints: Sequence[Endpoint], candidates: tuple[Endpoint, ...], in_panic: bool, inputs: BuildInputs
    ) -> None:
        super().__init__(endpoints, candidates, in_panic, inputs)
        self._count = len(candidates)
        self._random = inputs.rng.random
        self._choices = inputs.spec.choice_count
        self._bias = inputs.spec.active_request_bias
        self._loads = [inputs.load.slot(e.key) for e in candidates]
        self._weighted = len({e.weight for e in candidates}) > 1
        # EDF entries: (deadline, index). A random phase per endpoint, so that proxies rebuilt
        # together do not start in lockstep (Envoy does a random number of picks for this).
        self._heap = [(inputs.rng.random() / e.weight, i) for i, e in enumerate(candidates)]
        heapq.heapify(self._heap)

    def _choose(self, ctx: PickContext) -> Endpoint:
        if self._weighted:
            return self.candidates[self._edf_next()]
        count = self._count
        if count == 1:
            return self.candidates[0]
        rand = self._random
        first = int(rand() * count)
        if self._choices == 2:
            second = int(rand() * (count - 1))
            if second >= first:
                second += 1  # a distinct second choice
            loads = self._loads
            return self.candidates[first if loads[first].active <= loads[second].active else second]
        return self.candidates[self._least_of([first, *(int(rand() * count) for _ in range(self._choices - 1))])]

    def _choose_avoiding(self, ctx: PickContext, exclude: frozenset[str]) -> Endpoint:
        if self._weighted:
            while True:  # ends within one round: some candidate is not excluded
                chosen = self.candidates[self._edf_next()]
                if chosen.key not in exclude:
                    return chosen
        allowed = self._allowed(exclude)
        rand = self._random
        sampled = [allowed[int(rand() * len(allowed))] for _ in range(self._choices)]
        return self.candidates[self._least_of(sampled)]

    def _least_of(self, indexes: list[int]) -> int:
        loads = self._loads
        return min(indexes, key=lambda i: loads[i].active)  # min keeps the first on ties

    def _edf_next(self) -> int:
        deadline, index = heapq.heappop(self._heap)
        load: EndpointLoad = self._loads[index]
        weight = self.candidates[index].weight
        bias = self._bias
        if bias == 1.0:
            effective = weight / (load.active + 1)
        elif bias == 0.0:
            effective = float(weight)
        else:
            effective = weight / (load.active + 1) ** bias
        heapq.heappush(self._heap, (deadline + 1.0 / effective, index))
        return index
