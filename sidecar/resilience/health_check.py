"""Active health-check state of one cluster's endpoints (pure): probe results in, healthy set out.

Every endpoint is in one of three states; each probe result moves it by this table (rules as
Envoy's health checker):

| state | probe passes | probe fails |
|---|---|---|
| ``unchecked`` (new endpoint) | ``healthy`` at once | ``unhealthy`` at once |
| ``healthy`` | stays; failure streak reset | streak + 1; ``unhealthy`` at ``unhealthy_threshold`` |
| ``unhealthy`` | streak + 1; ``healthy`` at ``healthy_threshold`` | stays; pass streak reset |

``unavailable`` is the frozenset of keys not ``healthy`` (unchecked ones included: no traffic
before the first passing probe, unless the balancer is in panic), replaced on every change, with
``version`` counting changes. Probe timing is here too (``first_delay``, ``next_delay``), so the
runner (``sidecar.resilience.health_runner``) only sleeps, probes and reports.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, Literal

from mesh.model.policies import HealthCheck

HealthState = Literal["unchecked", "healthy", "unhealthy"]
UNCHECKED: Final = "unchecked"
HEALTHY: Final = "healthy"
UNHEALTHY: Final = "unhealthy"

# (state, passed) -> (threshold field or None for "moves at once", state it moves to)
TRANSITIONS: dict[tuple[str, bool], tuple[str | None, str]] = {
    (UNCHECKED, True): (None, HEALTHY),
    (UNCHECKED, False): (None, UNHEALTHY),
    (HEALTHY, True): ("", HEALTHY),  # "": no move; streak reset
    (HEALTHY, False): ("unhealthy_threshold", UNHEALTHY),
    (UNHEALTHY, True): ("healthy_threshold", HEALTHY),
    (UNHEALTHY, False): ("", UNHEALTHY),
}


class EndpointHealth:
    """One endpoint's check state (mutable; owned by ``HealthChecker``)."""

    __slots__ = ("checks", "failures", "last_checked", "last_detail", "last_passed", "state", "streak")

    def __init__(self) -> None:
        self.state: str = UNCHECKED
        self.streak = 0  # results in a row pointing away from ``state``
        self.last_passed: bool | None = None
        self.last_detail = ""
        self.last_checked = 0.0
        self.checks = 0
        self.failures = 0


class HealthChecker:
    """Check state of one cluster. Counters ``passes``, ``failures`` and ``transitions`` (by new
    state) feed the metrics."""

    def __init__(
        self,
        config: HealthCheck,
        keys: Iterable[str] = (),
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._clock = clock
        self.endpoints: dict[str, EndpointHealth] = {}
        self.unavailable: frozenset[str] = frozenset()
        self.version = 0
        self.passes = 0
        self.failures = 0
        self.transitions: dict[str, int] = {}
        self.set_endpoints(keys)

    def set_endpoints(self, keys: Iterable[str]) -> bool:
        """Track exactly ``keys`` (known ones keep their state); returns whether ``unavailable`` changed."""
        wanted = set(keys)
        for key in [k for k in self.endpoints if k not in wanted]:
            del self.endpoints[key]
        for key in wanted:
            if key not in self.endpoints:
                self.endpoints[key] = EndpointHealth()
        return self._publish()

    def update_config(self, config: HealthCheck) -> None:
        self.config = config

    def record(self, key: str, passed: bool, detail: str = "") -> bool:
        """One probe result for ``key``; returns whether ``unavailable`` changed."""
        health = self.endpoints.get(key)
        if health is None:
            return False
        health.checks += 1
        health.last_passed = passed
        health.last_detail = detail
        health.last_checked = self._clock()
        if passed:
            self.passes += 1
        else:
            self.failures += 1
            health.failures += 1
        threshold_field, target = TRANSITIONS[(health.state, passed)]
        if threshold_field is None:
            self._move(health, target)
        elif threshold_field == "":
            health.streak = 0
        else:
            health.streak += 1
            if health.streak >= getattr(self.config, threshold_field):
                self._move(health, target)
        return self._publish()

    def adopt(self, key: str, view: Mapping[str, Any]) -> bool:
        """Take ``key``'s state as another process's checker reported it (``endpoint_state``'s form;
        ``--workers``: one worker probes, the others adopt). Returns whether ``unavailable`` changed."""
        health = self.endpoints.get(key)
        if health is None:
            return False
        state = view["status"]
        if state not in (UNCHECKED, HEALTHY, UNHEALTHY):
            raise ValueError(f"status: must be unchecked, healthy or unhealthy, got {state!r}")
        if state != health.state:
            self._move(health, state)
        health.streak = int(view.get("streak", 0))
        health.checks = int(view.get("checks", 0))
        health.failures = int(view.get("failures", 0))
        result = view.get("last_result")
        health.last_passed = None if result is None else result == "pass"
        health.last_detail = str(view.get("last_detail", ""))
        ago = view.get("last_checked_ago_s")
        health.last_checked = self._clock() - float(ago) if ago is not None else 0.0
        return self._publish()

    def _move(self, health: EndpointHealth, state: str) -> None:
        health.state = state
        health.streak = 0
        self.transitions[state] = self.transitions.get(state, 0) + 1

    def _publish(self) -> bool:
        unavailable = frozenset(key for key, h in self.endpoints.items() if h.state != HEALTHY)
        if unavailable == self.unavailable:
            return False
        self.unavailable = unavailable
        self.version += 1
        return True

    def has_unchecked(self) -> bool:
        return any(h.state == UNCHECKED for h in self.endpoints.values())

    # --- timing ---

    def first_delay(self, rng: random.Random) -> float:
        """Before an endpoint's first probe: spread over the jitter (at once when there is none)."""
        return rng.random() * min(self.config.interval_jitter_s, self.config.interval_s)

    def next_delay(self, rng: random.Random) -> float:
        """Between two probes of one endpoint: the interval plus a random part of the jitter."""
        return self.config.interval_s + rng.random() * self.config.interval_jitter_s

    # --- views ---

    def state(self, key: str) -> str:
        health = self.endpoints.get(key)
        return health.state if health is not None else UNCHECKED

    def endpoint_state(self, key: str) -> dict[str, Any]:
        """Plain data for admin ``/clusters``."""
        health = self.endpoints.get(key)
        if health is None:
            return {}
        return {
            "status": health.state,
            "streak": health.streak,
            "checks": health.checks,
            "failures": health.failures,
            "last_result": None if health.last_passed is None else ("pass" if health.last_passed else "fail"),
            "last_detail": health.last_detail,
            "last_checked_ago_s": round(self._clock() - health.last_checked, 3) if health.checks else None,
        }


__all__ = ["HEALTHY", "TRANSITIONS", "UNCHECKED", "UNHEALTHY", "EndpointHealth", "HealthChecker", "HealthState"]
