"""Round robin: candidates in turn, weights ignored (use weighted_round_robin to honour them)."""

from __future__ import annotations

from collections.abc import Sequence

from lb.base import BalancerBase, BuildInputs
from lb.endpoint import Endpoint, PickContext


class RoundRobin(BalancerBase):
    kind = "round_robin"

    def __init__(
        self, endpoints: Sequence[Endpoint], candidates: tuple[Endpoint, ...], in_panic: bool, inputs: BuildInputs
    ) -> None:
        super().__init__(endpoints, candidates, in_panic, inputs)
        self._count = len(candidates)
        # Start at a random place, as Envoy does, so proxies that rebuild together do not all send
        # their next request to the same first endpoint.
        self._next = inputs.rng.randrange(self._count)

    def _choose(self, ctx: PickContext) -> Endpoint:
        i = self._next
        self._next = i + 1 if i + 1 < self._count else 0
        return self.candidates[i]

    def _choose_avoiding(self, ctx: PickContext, exclude: frozenset[str]) -> Endpoint:
        while True:  # ends within one turn: some candidate is not excluded
            chosen = self._choose(ctx)
            if chosen.key not in exclude:
                return chosen
