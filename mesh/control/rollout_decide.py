"""The rollout's decisions as a pure state machine: (spec, state, what was observed, now) → ``Decision``.

No clock, no sockets: the controller (``mesh.control.rollout_controller``) passes ``now`` (wall
seconds, so persisted times survive a restart) and what it measured, then carries out the
decision's ``route`` action and stores the new state.

Phases: ``pending`` (waiting for the canary subset to have a passing instance) → ``progressing``
(step ``i`` holds ``steps[i]`` % on the canary) → one of the terminal ``promoted`` (100 % canary,
which becomes the VirtualService's only subset), ``rolled_back`` (a breach or too little traffic:
100 % stable), ``aborted`` (by a user: 100 % stable) and ``failed`` (the route could not be
changed, or the canary never had a passing instance).

At the end of each window (``window_due``) the canary's window statistics decide:

- fewer than ``min_requests`` requests (or no metrics at all): **extend**, the same window grows
  by one interval (its numbers accumulate from the step's start), at most ``max_extensions`` times;
  then **rollback** ("not enough traffic"), never a promotion on no evidence;
- error rate above ``max_error_rate`` or p99 above ``max_p99_ms`` (strictly above): **rollback**;
- else **advance** to the next step (a fresh window), or **promote** after the last one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

from mesh.control.rollout_spec import RolloutSpec

Phase = Literal["pending", "progressing", "promoted", "rolled_back", "aborted", "failed"]
TERMINAL: frozenset[str] = frozenset({"promoted", "rolled_back", "aborted", "failed"})
RouteKind = Literal["none", "shift", "promote", "restore"]
Verdict = Literal["wait", "start", "extend", "advance", "promote", "rollback", "abort", "fail", "resume"]


@dataclass(frozen=True, slots=True)
class WindowStats:
    """The canary subset's traffic over one window, as its callers' sidecars counted it."""

    requests: float
    errors: float  # 5xx
    p99_ms: float | None
    seconds: float = 0.0

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests > 0 else None

    def to_json(self) -> dict[str, Any]:
        rate = self.error_rate
        return {
            "requests": round(self.requests, 3),
            "errors": round(self.errors, 3),
            "error_rate": None if rate is None else round(rate, 6),
            "p99_ms": None if self.p99_ms is None else round(self.p99_ms, 3),
            "window_s": round(self.seconds, 3),
        }


@dataclass(frozen=True, slots=True)
class RolloutState:
    phase: Phase = "pending"
    step: int = -1  # index into spec.steps; -1 before the first shift
    weight: int = 0  # canary percentage in force
    since: float = 0.0  # when the phase (pending) or the step (progressing) began
    window_started: float = 0.0  # start of the window being analysed (extensions keep it)
    extensions: int = 0
    reason: str = ""  # why it ended (terminal phases)

    @property
    def done(self) -> bool:
        return self.phase in TERMINAL

    def to_json(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "step": self.step,
            "weight": self.weight,
            "since": self.since,
            "window_started": self.window_started,
            "extensions": self.extensions,
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RolloutState:
        return cls(
            phase=data["phase"],
            step=int(data["step"]),
            weight=int(data["weight"]),
            since=float(data["since"]),
            window_started=float(data["window_started"]),
            extensions=int(data["extensions"]),
            reason=str(data.get("reason", "")),
        )


@dataclass(frozen=True, slots=True)
class Event:
    at: float
    kind: str
    message: str
    weight: int
    stats: WindowStats | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "at": datetime.fromtimestamp(self.at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "time": self.at,
            "kind": self.kind,
            "message": self.message,
            "weight": self.weight,
        }
        if self.stats is not None:
            out["stats"] = self.stats.to_json()
        return out


@dataclass(frozen=True, slots=True)
class RouteAction:
    """What the VirtualService must become: ``shift`` to ``weight`` % canary, ``promote`` (canary only),
    ``restore`` (stable only) or ``none``."""

    kind: RouteKind
    weight: int = 0


NO_ROUTE = RouteAction("none")


@dataclass(frozen=True, slots=True)
class Decision:
    state: RolloutState
    verdict: Verdict
    route: RouteAction = NO_ROUTE
    events: tuple[Event, ...] = ()


def created(now: float) -> tuple[RolloutState, Event]:
    return RolloutState(since=now, window_started=now), Event(now, "created", "waiting for the canary to be ready", 0)


def window_due(spec: RolloutSpec, state: RolloutState) -> float:
    """When the current window ends: one interval after it started per extension plus one."""
    return state.window_started + spec.interval * (state.extensions + 1)


def on_precheck(spec: RolloutSpec, state: RolloutState, ready: int, now: float) -> Decision:
    """``pending``: start the first step once the canary subset has a passing instance; give up after
    ``max_extensions + 1`` intervals without one."""
    if state.phase != "pending":
        return Decision(state, "wait")
    if ready > 0:
        weight = spec.steps[0]
        new = replace(state, phase="progressing", step=0, weight=weight, since=now, window_started=now, extensions=0)
        message = f"{ready} passing {spec.canary} instance(s); step 1/{len(spec.steps)}: {weight}% to {spec.canary}"
        return Decision(new, "start", RouteAction("shift", weight), (Event(now, "step", message, weight),))
    limit = spec.interval * (spec.max_extensions + 1)
    if now - state.since >= limit:
        reason = f"the {spec.canary} subset of {spec.service} had no passing instance for {limit:g}s"
        new = replace(state, phase="failed", reason=reason)
        return Decision(new, "fail", NO_ROUTE, (Event(now, "failed", reason, state.weight),))
    return Decision(state, "wait")


def on_window(spec: RolloutSpec, state: RolloutState, stats: WindowStats | None, now: float) -> Decision:
    """The end of a window (``now >= window_due``): extend, rollback, advance or promote."""
    if state.phase != "progressing":
        return Decision(state, "wait")
    if now < window_due(spec, state):
        return Decision(state, "wait")
    step_text = f"step {state.step + 1}/{len(spec.steps)} ({state.weight}%)"
    requests = 0.0 if stats is None else stats.requests
    if stats is None or requests < spec.min_requests:
        seen = "no metrics" if stats is None else f"{requests:g} requests"
        if state.extensions < spec.max_extensions:
            new = replace(state, extensions=state.extensions + 1)
            message = (
                f"{step_text}: {seen} to {spec.canary}, fewer than {spec.min_requests}; "
                f"window extended ({new.extensions}/{spec.max_extensions})"
            )
            return Decision(new, "extend", NO_ROUTE, (Event(now, "extended", message, state.weight, stats),))
        reason = (
            f"{step_text}: not enough traffic to judge {spec.canary}: {seen} after "
            f"{state.extensions + 1} window(s), {spec.min_requests} needed"
        )
        return _rollback(spec, state, reason, stats, now)
    rate = stats.error_rate or 0.0
    if rate > spec.max_error_rate:
        reason = f"{step_text}: error rate {rate:.2%} of {spec.canary} is above {spec.max_error_rate:.2%}"
        return _rollback(spec, state, reason, stats, now)
    if spec.max_p99_ms is not None and stats.p99_ms is not None and stats.p99_ms > spec.max_p99_ms:
        reason = f"{step_text}: p99 {stats.p99_ms:.1f}ms of {spec.canary} is above {spec.max_p99_ms:g}ms"
        return _rollback(spec, state, reason, stats, now)
    verdict_text = f"error rate {rate:.2%}" + (f", p99 {stats.p99_ms:.1f}ms" if stats.p99_ms is not None else "")
    if state.step + 1 >= len(spec.steps):
        reason = f"{step_text} passed ({verdict_text}); {spec.canary} is the only subset of {spec.service} now"
        new = replace(state, phase="promoted", weight=100, reason=reason)
        return Decision(new, "promote", RouteAction("promote", 100), (Event(now, "promoted", reason, 100, stats),))
    step = state.step + 1
    weight = spec.steps[step]
    new = replace(state, step=step, weight=weight, since=now, window_started=now, extensions=0)
    message = f"{step_text} passed ({verdict_text}); step {step + 1}/{len(spec.steps)}: {weight}% to {spec.canary}"
    return Decision(new, "advance", RouteAction("shift", weight), (Event(now, "step", message, weight, stats),))


def _rollback(spec: RolloutSpec, state: RolloutState, reason: str, stats: WindowStats | None, now: float) -> Decision:
    new = replace(state, phase="rolled_back", weight=0, reason=reason)
    message = f"{reason}; all traffic back to {spec.stable}"
    return Decision(new, "rollback", RouteAction("restore"), (Event(now, "rolled_back", message, 0, stats),))


def on_abort(spec: RolloutSpec, state: RolloutState, reason: str, now: float) -> Decision:
    """A user's abort: all traffic back to stable. A finished rollout stays as it ended."""
    if state.done:
        return Decision(state, "wait")
    new = replace(state, phase="aborted", weight=0, reason=reason)
    message = f"aborted: {reason}; all traffic back to {spec.stable}"
    return Decision(new, "abort", RouteAction("restore"), (Event(now, "aborted", message, 0),))


def on_failure(state: RolloutState, reason: str, now: float) -> Decision:
    """The route could not be changed (the VirtualService is gone or no longer validates), also when
    that change was the last one (a promotion or a rollback): the rollout then ends ``failed``."""
    if state.phase == "failed":
        return Decision(state, "wait")
    new = replace(state, phase="failed", reason=reason)
    return Decision(new, "fail", NO_ROUTE, (Event(now, "failed", reason, state.weight),))


def on_resume(spec: RolloutSpec, state: RolloutState, now: float) -> Decision:
    """After a control-plane restart: the scrape at the window's start is gone, so a progressing
    step's window starts again (its weight is put back, in case the restart came mid-change)."""
    if state.phase != "progressing":
        return Decision(state, "wait")
    new = replace(state, window_started=now, extensions=0)
    message = f"control plane restarted: step {state.step + 1}/{len(spec.steps)} ({state.weight}%) analysed again"
    return Decision(new, "resume", RouteAction("shift", state.weight), (Event(now, "resumed", message, state.weight),))


__all__ = [
    "NO_ROUTE",
    "TERMINAL",
    "Decision",
    "Event",
    "Phase",
    "RolloutState",
    "RouteAction",
    "Verdict",
    "WindowStats",
    "created",
    "on_abort",
    "on_failure",
    "on_precheck",
    "on_resume",
    "on_window",
    "window_due",
]
