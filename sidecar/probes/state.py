"""The probe state machine, as the kubelet's prober runs it (pure, clock injected).

Each probe result is ``passing``, ``warning`` (Consul's exit 1 of a script check) or ``critical``.
Passing and warning both count as success. The reported status changes only when
``successThreshold`` successes or ``failureThreshold`` failures came in a row, so a single odd
result does not flap the check. Until ``initialDelaySeconds`` have passed since the app (re)started,
no probe runs and the status is the initial one: readiness and startup start critical (not ready,
not started), liveness passing (Kubernetes' initial results).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from mesh.model.probes import ProbeRole, ProbeSpec

Status = Literal["passing", "warning", "critical"]
PASSING: Final = "passing"
WARNING: Final = "warning"
CRITICAL: Final = "critical"
INITIAL_STATUS: Final[dict[ProbeRole, Status]] = {"readiness": CRITICAL, "liveness": PASSING, "startup": CRITICAL}


@dataclass(frozen=True, slots=True)
class Result:
    """One probe run: its status and a line for the check's output."""

    status: Status
    output: str


class ProbeTracker:
    """One probe's current status, from its results and thresholds."""

    def __init__(self, role: ProbeRole, spec: ProbeSpec, clock: Callable[[], float]) -> None:
        self.role = role
        self.spec = spec
        self._clock = clock
        self.status: Status = INITIAL_STATUS[role]
        self.output = ""
        self.started_at = 0.0
        self._run = 0  # results in a row with the same success/failure
        self._last_ok: bool | None = None
        self.restart()

    def restart(self) -> None:
        """The app (re)started: initial status, counters cleared, the initial delay starts again."""
        self.started_at = self._clock()
        self.status = INITIAL_STATUS[self.role]
        self.output = f"{self.role} probe not run yet"
        self._run = 0
        self._last_ok = None

    def first_probe_in(self) -> float:
        """Seconds until the first probe may run (``initialDelaySeconds`` after the start)."""
        return max(0.0, self.started_at + self.spec.initial_delay - self._clock())

    @property
    def failed(self) -> bool:
        """``failureThreshold`` failures in a row (a startup probe that has failed for good)."""
        return self._last_ok is False and self._run >= self.spec.failure_threshold

    def record(self, result: Result) -> bool:
        """Take one result; True when the reported status changed."""
        ok = result.status != CRITICAL
        self._run = self._run + 1 if ok == self._last_ok else 1
        self._last_ok = ok
        needed = self.spec.success_threshold if ok else self.spec.failure_threshold
        before = self.status
        if self._run >= needed:
            self.status = result.status
            self.output = result.output
        else:
            kind = "successes" if ok else "failures"
            self.output = f"{self._run} of {needed} {kind} needed, still {self.status}: {result.output}"
        return self.status != before


__all__ = ["CRITICAL", "INITIAL_STATUS", "PASSING", "WARNING", "ProbeTracker", "Result", "Status"]
