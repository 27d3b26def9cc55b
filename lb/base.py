"""What every policy shares, done once per endpoint-set update: health filtering, panic mode, retries.

Like Envoy's ``LoadBalancerBase``: the candidates are the healthy endpoints, unless fewer than
``panic_threshold`` of all endpoints are healthy; then the balancer is in panic and spreads load
over all of them (sending some requests to endpoints that may be down beats overloading the few
that are up). Candidates are sorted by key so every sidecar builds the same schedule, ring and
table from the same set, whatever order discovery delivered it in.

A policy implements ``_choose`` (a pick with nothing excluded; candidates are never empty) and
``_choose_avoiding`` (called only on a retry whose first choice is excluded, when at least one
other candidate exists). ``pick`` stays short because it runs per request.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

from lb.endpoint import NO_HINTS, Endpoint, PickContext
from lb.load import LoadTracker
from lb.spec import PolicySpec


class Balancer(Protocol):
    """Picks an endpoint per request; built once per endpoint-set update by ``build_balancer``."""

    endpoints: tuple[Endpoint, ...]
    """All endpoints of the update, healthy or not, in the order given."""
    candidates: tuple[Endpoint, ...]
    """The endpoints picks come from: the healthy ones, or all of them in panic mode."""
    in_panic: bool
    """True when too few endpoints are healthy and all of them are used (Envoy's lb_healthy_panic)."""

    def pick(self, ctx: PickContext = NO_HINTS) -> Endpoint | None:
        """An endpoint for this request; None only when there is none to pick."""
        ...


def select_candidates(endpoints: Sequence[Endpoint], panic_threshold: float) -> tuple[tuple[Endpoint, ...], bool]:
    """The endpoints to balance over and whether that is panic mode.

    With ``panic_threshold`` 0 panic mode is off: no healthy endpoint means no candidate (Envoy).
    """
    if not endpoints:
        return (), False
    healthy = [e for e in endpoints if e.healthy]
    in_panic = panic_threshold > 0 and len(healthy) < panic_threshold * len(endpoints)
    chosen = list(endpoints) if in_panic else healthy
    chosen.sort(key=lambda e: e.key)
    return tuple(chosen), in_panic


@dataclass(frozen=True, slots=True)
class BuildInputs:
    """Everything a policy may use while building, besides its endpoints."""

    spec: PolicySpec
    load: LoadTracker
    rng: random.Random
    clock: Callable[[], float]


class BalancerBase(ABC):
    """A policy over a non-empty candidate set."""

    kind: ClassVar[str]

    def __init__(
        self, endpoints: Sequence[Endpoint], candidates: tuple[Endpoint, ...], in_panic: bool, inputs: BuildInputs
    ) -> None:
        if not candidates:
            raise ValueError("a policy needs at least one candidate endpoint")
        self.endpoints = tuple(endpoints)
        self.candidates = candidates
        self.in_panic = in_panic

    def pick(self, ctx: PickContext = NO_HINTS) -> Endpoint | None:
        chosen = self._choose(ctx)
        exclude = ctx.exclude
        if not exclude or chosen.key not in exclude:
            return chosen
        if len(exclude) >= len(self.candidates) and all(e.key in exclude for e in self.candidates):
            return chosen  # every endpoint was tried: trying one again beats failing the retry
        return self._choose_avoiding(ctx, exclude)

    @abstractmethod
    def _choose(self, ctx: PickContext) -> Endpoint:
        """The policy's pick, ignoring ``ctx.exclude``."""

    @abstractmethod
    def _choose_avoiding(self, ctx: PickContext, exclude: frozenset[str]) -> Endpoint:
        """A pick outside ``exclude``; at least one candidate is outside it."""

    def _allowed(self, exclude: frozenset[str]) -> list[int]:
        """Indexes of the candidates not excluded (for policies that re-run over the rest)."""
        return [i for i, e in enumerate(self.candidates) if e.key not in exclude]

    def __repr__(self) -> str:
        panic = ", in panic" if self.in_panic else ""
        return f"<{type(self).__name__} {len(self.candidates)}/{len(self.endpoints)} endpoints{panic}>"


class NoEndpoints:
    """The balancer of an empty set (or of an all-unhealthy set with panic mode off): picks nothing."""

    kind = "none"

    def __init__(self, endpoints: Sequence[Endpoint]) -> None:
        self.endpoints = tuple(endpoints)
        self.candidates: tuple[Endpoint, ...] = ()
        self.in_panic = False

    def pick(self, ctx: PickContext = NO_HINTS) -> Endpoint | None:
        return None

    def __repr__(self) -> str:
        return f"<NoEndpoints 0/{len(self.endpoints)} endpoints>"
