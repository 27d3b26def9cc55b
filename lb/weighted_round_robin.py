"""Smooth weighted round robin (nginx): exact weight shares per cycle, heavy endpoints spread out.

nginx's rule, per pick: every endpoint's ``current`` grows by its weight, the largest ``current``
wins (the first in candidate order on a tie) and gives back the total weight. Over any window of
``total weight`` consecutive picks each endpoint gets exactly its weight, and its picks are spread
through the window (weights 5,1,1 give a a b a c a a, not a a a a a b c).

Run naively that is O(endpoints) per pick. Endpoints of equal weight always take their turns in
order, so the schedule here keeps one ``current`` per distinct weight (a group) and steps in
O(distinct weights); weights are divided by their gcd first (the schedule is scale-free). When the
cycle is short enough it is computed once per update and a pick is one list index.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from lb.base import BalancerBase, BuildInputs
from lb.endpoint import Endpoint, PickContext

CYCLE_LIMIT = 1 << 16
"""Longest schedule precomputed per update (entries x distinct weights bounds the build work)."""


class _Group:
    """The endpoints of one weight; members take turns in candidate order."""

    __slots__ = ("current", "members", "turn", "weight")

    def __init__(self, weight: int, members: list[int]) -> None:
        self.weight = weight
        self.members = members
        self.turn = 0  # members[turn] is next; all members from ``turn`` on share ``current``
        self.current = 0


class SmoothSchedule:
    """nginx's smooth weighted round robin over candidate indexes, one step per pick."""

    def __init__(self, weights: Sequence[int]) -> None:
        divisor = math.gcd(*weights)
        by_weight: dict[int, list[int]] = {}
        for index, weight in enumerate(weights):
            by_weight.setdefault(weight // divisor, []).append(index)
        self.groups = [_Group(w, members) for w, members in by_weight.items()]
        self.total = sum(g.weight * len(g.members) for g in self.groups)

    def step(self) -> int:
        best: _Group | None = None
        best_index = 0
        for group in self.groups:
            group.current += group.weight
            index = group.members[group.turn]
            if best is None or group.current > best.current or (group.current == best.current and index < best_index):
                best, best_index = group, index
        assert best is not None
        best.turn += 1
        if best.turn == len(best.members):
            best.turn = 0
            best.current -= self.total  # every member has now given the total back once
        return best_index


class WeightedRoundRobin(BalancerBase):
    kind = "weighted_round_robin"

    def __init__(
        self, endpoints: Sequence[Endpoint], candidates: tuple[Endpoint, ...], in_panic: bool, inputs: BuildInputs
    ) -> None:
        super().__init__(endpoints, candidates, in_panic, inputs)
        self._schedule = SmoothSchedule([e.weight for e in candidates])
        total = self._schedule.total
        self._cycle: list[Endpoint] | None = None
        if total * len(self._schedule.groups) <= CYCLE_LIMIT:
            self._cycle = [candidates[self._schedule.step()] for _ in range(total)]
            self._length = total
            # A random starting point in the cycle, as Envoy does, so that proxies rebuilt at the
            # same moment do not all start with the heaviest endpoint.
            self._next = inputs.rng.randrange(total)
        else:
            for _ in range(inputs.rng.randrange(len(candidates))):
                self._schedule.step()

    def _choose(self, ctx: PickContext) -> Endpoint:
        cycle = self._cycle
        if cycle is None:
            return self.candidates[self._schedule.step()]
        i = self._next
        self._next = i + 1 if i + 1 < self._length else 0
        return cycle[i]

    def _choose_avoiding(self, ctx: PickContext, exclude: frozenset[str]) -> Endpoint:
        while True:  # ends within one cycle: some candidate is not excluded
            chosen = self._choose(ctx)
            if chosen.key not in exclude:
                return chosen
