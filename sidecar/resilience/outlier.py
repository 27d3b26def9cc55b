"""Passive outlier detection of one cluster (Envoy's ``outlier_detection``), pure: clock and RNG injected.

Inputs: ``on_result(key, result)`` after every upstream attempt, and ``tick()`` at least every
``interval`` (``next_tick_at`` says when the next ejection ends or interval starts). Output: the
``ejected`` frozenset of endpoint keys, replaced (never mutated) whenever it changes, with
``version`` counting the changes; the sidecar presents those endpoints to the balancer as
unhealthy, so ``lb``'s panic threshold still guards against ejecting a whole cluster.

Rules (``mesh.model.policies.OutlierDetection`` documents the fields):
- A response below 500 resets both consecutive counters; a 5xx (or a connect failure, reset or
  timeout) adds to ``consecutive_5xx``; 502/503/504 (and those local failures) add to
  ``consecutive_gateway_errors``. Reaching a threshold is a *detection*; it ejects with
  probability ``enforcing_*`` %, and resets that counter either way.
- Success rate, once per interval: over endpoints with at least ``success_rate_request_volume``
  attempts in the interval, if there are ``success_rate_minimum_hosts`` of them, those below
  mean - factor x stdev are detected (and ejected with ``enforcing_success_rate`` %).
- An ejection lasts ``base_ejection_time x n`` (n = the endpoint's ejection count, this one
  included), at most ``max_ejection_time``; each interval an un-ejected endpoint's count drops by 1.
- Never more than ``max_ejection_percent`` % of the endpoints ejected at once, except that one
  endpoint may always be ejected (Envoy). A detection over that limit is counted, not enforced.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterable
from typing import Any, Final

from mesh.model.policies import OutlierDetection
from sidecar.resilience.retry import AttemptResult

CONSECUTIVE_5XX: Final = "consecutive_5xx"
CONSECUTIVE_GATEWAY: Final = "consecutive_gateway_errors"
SUCCESS_RATE: Final = "success_rate"


class HostOutlierState:
    """What the detector knows about one endpoint (mutable; owned by the detector)."""

    __slots__ = (
        "consecutive_5xx",
        "consecutive_gateway",
        "ejected_at",
        "ejected_until",
        "ejections",
        "interval_failures",
        "interval_total",
        "last_reason",
    )

    def __init__(self) -> None:
        self.consecutive_5xx = 0
        self.consecutive_gateway = 0
        self.ejected_until = 0.0  # 0: not ejected
        self.ejected_at = 0.0
        self.ejections = 0  # the multiplier: grows per ejection, decays per clean interval
        self.interval_total = 0
        self.interval_failures = 0
        self.last_reason = ""


class OutlierDetector:
    """Outlier state of one cluster's endpoints. Counters ``ejections_enforced`` /
    ``ejections_detected`` (by reason) and ``ejections_overflow`` feed the metrics."""

    def __init__(
        self,
        config: OutlierDetection,
        keys: Iterable[str] = (),
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self._clock = clock
        self._rng = rng or random.Random()
        self.hosts: dict[str, HostOutlierState] = {}
        self.ejected: frozenset[str] = frozenset()
        self.version = 0
        self.ejections_enforced: dict[str, int] = {}
        self.ejections_detected: dict[str, int] = {}
        self.ejections_overflow = 0
        self.ejections_adopted = 0  # taken from another worker process (``adopt_ejection``)
        self._interval_start = clock()
        self.set_endpoints(keys)

    # === configuration ===

    def set_endpoints(self, keys: Iterable[str]) -> bool:
        """The cluster's endpoint set changed: keep known endpoints' history, forget the gone ones.
        Returns whether ``ejected`` changed."""
        wanted = set(keys)
        for key in [k for k in self.hosts if k not in wanted]:
            del self.hosts[key]
        for key in wanted:
            if key not in self.hosts:
                self.hosts[key] = HostOutlierState()
        return self._publish()

    def update_config(self, config: OutlierDetection) -> None:
        """New settings from a snapshot swap; ejections in progress keep their end time."""
        self.config = config

    # === inputs ===

    def on_result(self, key: str, result: AttemptResult) -> bool:
        """Account one attempt's outcome on ``key``; returns whether ``ejected`` changed."""
        host = self.hosts.get(key)
        if host is None:
            return False  # an endpoint of an older snapshot
        host.interval_total += 1
        if result.failure is None and result.status < 500:  # is_5xx_like, inlined (per request)
            host.consecutive_5xx = 0
            host.consecutive_gateway = 0
            return False
        host.interval_failures += 1
        if host.ejected_until:
            return False  # a request that was in flight when it was ejected
        config = self.config
        host.consecutive_5xx += 1
        if result.is_gateway_error:
            host.consecutive_gateway += 1
        if config.consecutive_gateway_errors and host.consecutive_gateway >= config.consecutive_gateway_errors:
            host.consecutive_gateway = 0
            if self._detected(key, host, CONSECUTIVE_GATEWAY, config.enforcing_consecutive_gateway_errors):
                host.consecutive_5xx = 0
                return self._publish()
        if config.consecutive_5xx and host.consecutive_5xx >= config.consecutive_5xx:
            host.consecutive_5xx = 0
            if self._detected(key, host, CONSECUTIVE_5XX, config.enforcing_consecutive_5xx):
                host.consecutive_gateway = 0
                return self._publish()
        return False

    def tick(self) -> bool:
        """End due ejections; at each interval's end also run success-rate detection and decay
        ejection counts. Returns whether ``ejected`` changed."""
        now = self._clock()
        ended: set[str] = set()
        for key, host in self.hosts.items():
            if host.ejected_until and now >= host.ejected_until:
                host.ejected_until = 0.0
                host.consecutive_5xx = 0
                host.consecutive_gateway = 0
                ended.add(key)
        if now - self._interval_start >= self.config.interval_s:
            self._interval_start = now
            self._success_rate()
            for key, host in self.hosts.items():
                if not host.ejected_until and key not in ended and host.ejections > 0:
                    host.ejections -= 1
                host.interval_total = 0
                host.interval_failures = 0
        return self._publish()

    def next_tick_at(self) -> float:
        """When ``tick`` next has work: the earliest ejection end or the interval's end."""
        at = self._interval_start + self.config.interval_s
        for host in self.hosts.values():
            if host.ejected_until and host.ejected_until < at:
                at = host.ejected_until
        return at

    def adopt_ejection(self, key: str, duration_s: float, reason: str, ejections: int) -> bool:
        """Another worker process ejected ``key`` for ``duration_s`` more seconds (``--workers``):
        eject it here too, unless it already is or ``max_ejection_percent`` forbids (counted as
        an overflow). The ejection multiplier follows the other worker's. Not counted as enforced
        here (the worker that detected it counts it). Returns whether ``ejected`` changed."""
        host = self.hosts.get(key)
        if host is None or host.ejected_until or duration_s <= 0:
            return False
        if not self._may_eject():
            self.ejections_overflow += 1
            return False
        now = self._clock()
        host.ejections = max(host.ejections, ejections)
        host.ejected_at = now
        host.ejected_until = now + min(duration_s, max(self.config.max_ejection_time_s, 0.0))
        host.last_reason = reason
        host.consecutive_5xx = 0
        host.consecutive_gateway = 0
        self.ejections_adopted += 1
        return self._publish()

    def ejection(self, key: str) -> tuple[float, str, int] | None:
        """``key``'s ejection as another worker adopts it: (seconds left, reason, ejection count)."""
        host = self.hosts.get(key)
        if host is None or not host.ejected_until:
            return None
        return max(0.0, host.ejected_until - self._clock()), host.last_reason, host.ejections

    # === decisions ===

    def _detected(self, key: str, host: HostOutlierState, reason: str, enforcing: float) -> bool:
        self.ejections_detected[reason] = self.ejections_detected.get(reason, 0) + 1
        if not self._may_eject():
            self.ejections_overflow += 1
            return False
        if enforcing < 100 and self._rng.random() * 100 >= enforcing:
            return False
        now = self._clock()
        host.ejections += 1
        config = self.config
        duration = min(config.base_ejection_time_s * host.ejections, max(config.max_ejection_time_s, 0.0))
        host.ejected_at = now
        host.ejected_until = now + duration
        host.last_reason = reason
        self.ejections_enforced[reason] = self.ejections_enforced.get(reason, 0) + 1
        return True

    def _may_eject(self) -> bool:
        """Below ``max_ejection_percent`` after this ejection, or none ejected yet (Envoy)."""
        ejected = sum(1 for h in self.hosts.values() if h.ejected_until)
        if ejected == 0:
            return True
        return (ejected + 1) * 100 <= self.config.max_ejection_percent * len(self.hosts)

    def _success_rate(self) -> None:
        config = self.config
        rates: list[tuple[str, HostOutlierState, float]] = []
        for key, host in self.hosts.items():
            if not host.ejected_until and host.interval_total >= config.success_rate_request_volume:
                rates.append((key, host, 1.0 - host.interval_failures / host.interval_total))
        if len(rates) < config.success_rate_minimum_hosts:
            return
        mean = sum(rate for _, _, rate in rates) / len(rates)
        stdev = math.sqrt(sum((rate - mean) ** 2 for _, _, rate in rates) / len(rates))
        threshold = mean - config.success_rate_stdev_factor * stdev
        for key, host, rate in sorted(rates, key=lambda item: item[2]):
            if rate < threshold:
                self._detected(key, host, SUCCESS_RATE, config.enforcing_success_rate)

    def _publish(self) -> bool:
        ejected = frozenset(key for key, host in self.hosts.items() if host.ejected_until)
        if ejected == self.ejected:
            return False
        self.ejected = ejected
        self.version += 1
        return True

    # === views ===

    def endpoint_state(self, key: str) -> dict[str, Any]:
        """Plain data for admin ``/clusters``; ``ejected_for_s`` counts down to un-ejection."""
        host = self.hosts.get(key)
        if host is None:
            return {}
        ejected = bool(host.ejected_until)
        return {
            "ejected": ejected,
            "ejected_for_s": round(max(0.0, host.ejected_until - self._clock()), 3) if ejected else 0.0,
            "ejection_reason": host.last_reason if ejected else "",
            "ejections": host.ejections,
            "consecutive_5xx": host.consecutive_5xx,
            "consecutive_gateway_errors": host.consecutive_gateway,
            "interval_requests": host.interval_total,
            "interval_failures": host.interval_failures,
        }


__all__ = ["CONSECUTIVE_5XX", "CONSECUTIVE_GATEWAY", "SUCCESS_RATE", "HostOutlierState", "OutlierDetector"]
