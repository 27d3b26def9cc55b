"""Random: each pick draws a candidate with probability proportional to its weight.

Unlike Envoy's RANDOM (which ignores weights) weights are honoured, so a weight means the same thing
under every policy here. Equal weights take a single multiply; unequal ones a bisect over the
cumulative weights, which are computed once per update.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from itertools import accumulate

from lb.base import BalancerBase, BuildInputs
from lb.endpoint import Endpoint, PickContext


class RandomPick(BalancerBase):
    kind = "random"

    def __init__(
        self, endpoints: Sequence[Endpoint], candidates: tuple[Endpoint, ...], in_panic: bool, inputs: BuildInputs
    ) -> None:
        super().__init__(endpoints, candidates, in_panic, inputs)
        self._random = inputs.rng.random
        self._count = len(candidates)
        weights = [e.weight for e in candidates]
        self._weighted = len(set(weights)) > 1
        self._cumulative = list(accumulate(weights))
        self._total = self._cumulative[-1]

    def _choose(self, ctx: PickContext) -> Endpoint:
        if self._weighted:
            return self.candidates[bisect_right(self._cumulative, self._random() * self._total)]
        return self.candidates[int(self._random() * self._count)]

    def _choose_avoiding(self, ctx: PickContext, exclude: frozenset[str]) -> Endpoint:
        allowed = [self.candidates[i] for i in self._allowed(exclude)]
        cumulative = list(accumulate(e.weight for e in allowed))
        return allowed[bisect_right(cumulative, self._random() * cumulative[-1])]
