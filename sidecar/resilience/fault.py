"""Fault injection (Istio ``fault``), pure: per request, whether to delay it and whether to abort it.

Each part rolls independently with the injected RNG: the delay with ``delay.percentage`` %, the
abort with ``abort.percentage`` %. The proxy applies the delay first (the request waits before
routing goes on; the client may give up meanwhile), then the abort: the request is answered
with ``abort.http_status`` and ``ABORT_MESSAGE`` and never forwarded. Envoy's fault filter does
the same, with the same body.
"""

from __future__ import annotations

import random
from typing import NamedTuple

from mesh.model.policies import FaultPolicy

ABORT_MESSAGE = "fault filter abort"


class FaultDecision(NamedTuple):
    """What to do to one request: wait ``delay_s`` (0: no delay), then answer ``abort_status`` (0: no abort)."""

    delay_s: float
    abort_status: int


NO_FAULT = FaultDecision(0.0, 0)


def rolls(percentage: float, rng: random.Random) -> bool:
    """True with probability ``percentage`` / 100 (exactly never at 0 and always at 100)."""
    if percentage >= 100.0:
        return True
    return percentage > 0.0 and rng.random() * 100.0 < percentage


def decide_fault(policy: FaultPolicy | None, rng: random.Random) -> FaultDecision:
    """The faults to inject into one request (``NO_FAULT`` for most)."""
    if policy is None:
        return NO_FAULT
    delay = policy.delay
    abort = policy.abort
    delay_s = delay.fixed_delay_s if delay is not None and rolls(delay.percentage, rng) else 0.0
    status = abort.http_status if abort is not None and rolls(abort.percentage, rng) else 0
    if not delay_s and not status:
        return NO_FAULT
    return FaultDecision(delay_s, status)


__all__ = ["ABORT_MESSAGE", "NO_FAULT", "FaultDecision", "decide_fault", "rolls"]
