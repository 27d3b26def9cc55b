"""Per-endpoint load state that outlives balancer rebuilds: in-flight requests and peak-EWMA latency.

The sidecar keeps one ``LoadTracker`` per cluster and calls ``start`` / ``finish`` around every
upstream request; ``least_request`` and ``peak_ewma`` balancers read it. A rebuild (new endpoint
set) keeps the tracker, so an endpoint's in-flight count and latency estimate survive updates.

Peak EWMA as in Finagle / tower / Linkerd: an observed latency above the estimate replaces it at
once (the peak); a lower one is averaged in with weight ``1 - exp(-elapsed / decay_s)``; with no
observations the estimate decays towards zero, so an idle endpoint is eventually probed again.
New endpoints start at ``default_rtt_s`` (Linkerd: 30 ms). A failed request never lowers the
estimate (one faster than the estimate counts as no observation): otherwise an endpoint that fails
fast would look fastest and draw all traffic.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection


class EndpointLoad:
    """Mutable load of one endpoint. Balancers hold these objects to skip a dict lookup per pick."""

    __slots__ = ("active", "ewma_s", "failures", "requests", "stamp")

    def __init__(self, ewma_s: float, stamp: float) -> None:
        self.active = 0
        self.ewma_s = ewma_s  # latency estimate as of ``stamp``
        self.stamp = stamp
        self.requests = 0
        self.failures = 0

    def ewma_at(self, now: float, decay_s: float) -> float:
        """The latency estimate decayed to ``now`` (pure: decays compose, so nothing is stored)."""
        elapsed = now - self.stamp
        return self.ewma_s * math.exp(-elapsed / decay_s) if elapsed > 0 else self.ewma_s


class LoadTracker:
    """Load state keyed by endpoint key; cheap enough for the per-request path (one dict lookup)."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        decay_s: float = 10.0,
        default_rtt_s: float = 0.030,
    ) -> None:
        if not decay_s > 0 or not default_rtt_s >= 0:
            raise ValueError("load: decay_s must be > 0 and default_rtt_s >= 0")
        self._clock = clock
        self.decay_s = decay_s  # build_balancer sets this from a peak_ewma spec's ewma_decay_s
        self.default_rtt_s = default_rtt_s
        # Latency estimates cost an exp() per request; only peak-EWMA balancing reads them
        # (build_balancer turns this on for it). Off: counts only.
        self.track_latency = True
        self._slots: dict[str, EndpointLoad] = {}

    def slot(self, key: str) -> EndpointLoad:
        """The state object of ``key``, created on first use."""
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = EndpointLoad(self.default_rtt_s, self._clock())
        return slot

    def start(self, key: str) -> None:
        """A request to ``key`` has been sent."""
        slot = self._slots.get(key) or self.slot(key)
        slot.active += 1

    def finish(self, key: str, latency_s: float, ok: bool) -> None:
        """The request to ``key`` ended after ``latency_s``; ``ok`` False for failures (5xx, reset, timeout)."""
        slot = self._slots.get(key) or self.slot(key)
        if slot.active > 0:
            slot.active -= 1
        slot.requests += 1
        if not self.track_latency:
            if not ok:
                slot.failures += 1
            return
        if not latency_s >= 0:  # negative or NaN: a caller bug; never poison the estimate
            latency_s = 0.0
        now = self._clock()
        elapsed = now - slot.stamp
        recency = math.exp(-elapsed / self.decay_s) if elapsed > 0 else 1.0
        estimate = slot.ewma_s
        if not ok:
            slot.failures += 1
            if latency_s <= estimate * recency:
                return  # a failure faster than the estimate: no observation (the estimate decays on)
            slot.ewma_s = latency_s
        elif latency_s > estimate:
            slot.ewma_s = latency_s  # the peak: react to a slowdown at once
        else:
            slot.ewma_s = estimate * recency + latency_s * (1.0 - recency)
        slot.stamp = now

    def active(self, key: str) -> int:
        """Requests to ``key`` in flight now."""
        slot = self._slots.get(key)
        return slot.active if slot is not None else 0

    def ewma_s(self, key: str) -> float:
        """The peak-EWMA latency estimate of ``key`` now, in seconds."""
        slot = self._slots.get(key)
        return self.default_rtt_s if slot is None else slot.ewma_at(self._clock(), self.decay_s)

    def cost(self, key: str) -> float:
        """Linkerd's peak-EWMA load: latency estimate x (in-flight + 1)."""
        return self.ewma_s(key) * (self.active(key) + 1)

    def prune(self, keep: Collection[str]) -> None:
        """Forget idle endpoints not in ``keep`` (call on endpoint-set updates so state does not grow).

        Endpoints with requests still in flight are kept until those finish and a later prune runs.
        """
        for key in [k for k, s in self._slots.items() if k not in keep and s.active == 0]:
            del self._slots[key]

    def __len__(self) -> int:
        return len(self._slots)
