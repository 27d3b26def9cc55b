"""The rollout controller: runs each rollout inside the control plane, step by step, across restarts.

One task per unfinished rollout. It asks the pure state machine (``mesh.control.rollout_decide``)
what to do, carries out the route change through ``ControlPlane.apply`` (the path ``mesh apply``
takes: validated, versioned, pushed to the sidecars), then saves the new state and events in the
rollout store before it waits again. At start the controller loads every stored rollout and
resumes the unfinished ones (a progressing step's window starts again: its baseline scrape was
in memory). Decisions for one rollout are serialized by one lock, so an abort and the end of a
window never both act.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from prometheus_client import Counter, Gauge

from discovery.client_models import RegistryError
from mesh.control.changes import Conflict
from mesh.control.instances import exclusion_reason, instances_from_entries
from mesh.control.plane import ControlPlane
from mesh.control.rollout_decide import (
    Decision,
    RolloutState,
    RouteAction,
    WindowStats,
    created,
    on_abort,
    on_failure,
    on_precheck,
    on_resume,
    on_window,
    window_due,
)
from mesh.control.rollout_lease import Leadership, SoleLeader
from mesh.control.rollout_metrics import Baseline
from mesh.control.rollout_routes import RouteError, check_subsets, find_stable, rewrite
from mesh.control.rollout_spec import RolloutSpec
from mesh.control.rollout_store import RolloutRecord, RolloutStore
from mesh.control.state import StoredResource
from mesh.control.store import StoreError
from mesh.model.hosts import service_from_host
from mesh.model.reader import ConfigError
from mesh.rules.destination_rule import DestinationRuleSpec
from mesh.rules.resource import ResourceKey, parse_resource

log = logging.getLogger("mesh.control.rollout")

DECISIONS = Counter(
    "mesh_control_rollout_decisions_total",
    "Rollout decisions carried out, by verdict (start, advance, extend, promote, rollback, abort, fail, resume).",
    ["verdict"],
)
CANARY_WEIGHT = Gauge(
    "mesh_control_rollout_canary_weight", "Canary weight in force, per unfinished rollout.", ["namespace", "rollout"]
)

PRECHECK_POLL = 1.0  # seconds between looks for a passing canary instance (at most one interval)


class RolloutMetrics(Protocol):
    async def baseline(self) -> Baseline: ...

    async def window(self, baseline: Baseline, service: str, namespace: str, subset: str) -> WindowStats | None: ...

    async def close(self) -> None: ...


class RolloutConflict(Exception):
    """Another unfinished rollout already manages that name or VirtualService (HTTP 409)."""


class RolloutNotFound(Exception):
    """No rollout by that name (HTTP 404)."""


class NotLeader(Exception):
    """Another replica runs the rollouts (HTTP 503 naming it): changes go there."""

    def __init__(self, holder: dict[str, Any] | None) -> None:
        self.leader_url = str((holder or {}).get("url", ""))
        where = f"replica {holder.get('replica')} at {self.leader_url}" if holder else "another replica (none yet)"
        super().__init__(f"rollouts are run by {where}: send rollout changes there")


class RolloutController:
    def __init__(
        self,
        plane: ControlPlane,
        store: RolloutStore,
        metrics: RolloutMetrics,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        leadership: Leadership | None = None,
    ) -> None:
        self.plane = plane
        self.store = store
        self.metrics = metrics
        self._clock = clock
        self._sleep = sleep
        self.records: dict[str, RolloutRecord] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.leadership: Leadership = leadership or SoleLeader()
        self._lead_task: asyncio.Task[None] | None = None

    # === lifecycle ===

    async def start(self) -> None:
        """Lead at once with a store of our own; with a shared one, once the lease is won."""
        if self.leadership.leader:
            await self._take_over(await self.store.open())
        else:
            await self.store.open()
        self._lead_task = asyncio.get_running_loop().create_task(
            self.leadership.run(self._on_leadership), name="rollout-leadership"
        )

    async def _on_leadership(self, leader: bool) -> None:
        if not leader:
            await self._cancel_tasks()
            return
        try:
            await self._take_over(await self.store.load())
        except StoreError as exc:  # the lease is renewed regardless: the next loss/win retries
            log.error("cannot load the stored rollouts to take them over: %s", exc)

    async def _take_over(self, records: list[RolloutRecord]) -> None:
        """Drive every unfinished stored rollout (a progressing step's window starts again)."""
        await self._cancel_tasks()
        self.records = {r.key: r for r in records}
        for record in records:
            if record.state.done:
                continue
            decision = on_resume(record.spec, record.state, self._clock())
            if decision.verdict == "resume":
                try:
                    await self._carry_out(record.key, decision)
                except StoreError as exc:  # driving it goes on; the next decision is saved
                    log.error("rollout %s: cannot save its resumption: %s", record.key, exc)
            self._spawn(record.key)
        if self._tasks:
            log.info("resumed %d unfinished rollout(s)", len(self._tasks), extra={"rollouts": sorted(self._tasks)})

    async def _cancel_tasks(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    async def stop(self) -> None:
        if self._lead_task is not None:
            self._lead_task.cancel()
            await asyncio.gather(self._lead_task, return_exceptions=True)
            self._lead_task = None
        await self._cancel_tasks()
        await self.leadership.release()
        await self.metrics.close()
        await self.store.close()

    # === API operations ===

    def now(self) -> float:
        return self._clock()

    async def _fresh(self) -> None:
        """On a replica that does not lead, the leader's records as stored now."""
        if not self.leadership.leader:
            self.records = {r.key: r for r in await self.store.load()}

    def _require_leader(self) -> None:
        if not self.leadership.leader:
            raise NotLeader(self.leadership.holder())

    async def list(self, namespace: str | None = None) -> list[RolloutRecord]:
        await self._fresh()
        return [r for key, r in sorted(self.records.items()) if namespace is None or r.spec.namespace == namespace]

    async def get(self, namespace: str, name: str) -> RolloutRecord:
        await self._fresh()
        record = self.records.get(f"{namespace}/{name}")
        if record is None:
            raise RolloutNotFound(f"rollout {namespace}/{name} not found")
        return record

    async def create(self, spec: RolloutSpec) -> RolloutRecord:
        """Check the spec against the configuration in force, store it, start driving it."""
        self._require_leader()
        key = f"{spec.namespace}/{spec.name}"
        for other in self.records.values():
            if other.state.done:
                continue
            if other.key == key:
                raise RolloutConflict(f"rollout {key} is still {other.state.phase}: abort it first")
            if (other.spec.namespace, other.spec.virtual_service) == (spec.namespace, spec.virtual_service):
                raise RolloutConflict(
                    f"rollout {other.key} is already shifting VirtualService {spec.namespace}/{spec.virtual_service}"
                )
        spec = self._resolve(spec)
        state, event = created(self._clock())
        record = RolloutRecord(spec, state, (event.to_json(),), self._clock())
        await self.store.save(record)
        self.records[key] = record
        self._spawn(key)
        log.info("rollout created", extra={"rollout": key, "spec": spec.to_json()})
        return record

    async def abort(self, namespace: str, name: str, reason: str) -> RolloutRecord:
        self._require_leader()
        record = await self.get(namespace, name)
        async with self._lock(record.key):
            record = self.records[record.key]
            decision = on_abort(record.spec, record.state, reason or "by request", self._clock())
            if decision.verdict == "abort":
                await self._carry_out(record.key, decision)
        self._wake_up(record.key)
        return self.records[record.key]

    def _resolve(self, spec: RolloutSpec) -> RolloutSpec:
        """The stable subset (from the VirtualService when not given), both subsets defined, and a route
        the rollout can manage: ``ConfigError`` naming the field otherwise."""
        state = self.plane.state
        vs = state.get(ResourceKey("VirtualService", spec.namespace, spec.virtual_service))
        if vs is None:
            raise ConfigError(
                "virtual_service",
                f"VirtualService {spec.namespace}/{spec.virtual_service} does not exist: apply one routing "
                f"{spec.service} to its stable subset first",
            )
        document = vs.resource.document()
        try:
            stable = spec.stable or find_stable(document, spec.service, spec.namespace, spec.canary)
            rewrite(
                document,
                service=spec.service,
                namespace=spec.namespace,
                stable=stable,
                canary=spec.canary,
                action=RouteAction("shift", spec.steps[0]),
                rollout=spec.name,
            )
        except RouteError as exc:
            raise ConfigError("stable" if "--from" in str(exc) else "virtual_service", str(exc)) from exc
        rule = self._destination_rule(spec)
        check_subsets(None if rule is None else rule[0].resource.document(), spec.service, stable, spec.canary)
        return spec.with_stable(stable)

    def _destination_rule(self, spec: RolloutSpec) -> tuple[StoredResource, DestinationRuleSpec] | None:
        """The DestinationRule of the rolled-out service (its host names the service)."""
        for item in self.plane.state.listing("DestinationRule", spec.namespace):
            rule_spec = item.resource.spec
            if isinstance(rule_spec, DestinationRuleSpec):
                ref = service_from_host(rule_spec.host)
                if ref is not None and ref.service == spec.service and ref.namespace in (None, spec.namespace):
                    return item, rule_spec
        return None

    # === driving one rollout ===

    def _lock(self, key: str) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    def _spawn(self, key: str) -> None:
        self._wake[key] = asyncio.Event()
        old = self._tasks.get(key)
        if old is not None and not old.done():
            old.cancel()
        self._tasks[key] = asyncio.get_running_loop().create_task(self._drive(key), name=f"rollout-{key}")

    def _wake_up(self, key: str) -> None:
        event = self._wake.get(key)
        if event is not None:
            event.set()

    async def _wait(self, key: str, seconds: float, state: RolloutState | None = None) -> None:
        """Sleep ``seconds`` or until woken (an abort); at once when the state moved past ``state``."""
        event = self._wake[key]
        event.clear()
        if seconds <= 0 or (state is not None and self.records[key].state != state):
            return
        sleeper = asyncio.ensure_future(self._sleep(seconds))
        waiter = asyncio.ensure_future(event.wait())
        try:
            await asyncio.wait({sleeper, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waiter.cancel()

    async def _drive(self, key: str) -> None:
        baseline: Baseline | None = None
        while True:
            record = self.records[key]
            spec, state = record.spec, record.state
            if state.done:
                return
            try:
                if state.phase == "pending":
                    ready = await self._ready_instances(spec)
                    async with self._lock(key):
                        record = self.records[key]
                        decision = on_precheck(spec, record.state, ready, self._clock())
                        if decision.verdict != "wait":
                            await self._carry_out(key, decision)
                            baseline = None
                    if decision.verdict == "wait":
                        await self._wait(key, min(PRECHECK_POLL, spec.interval))
                    continue
                if baseline is None:
                    baseline = await self.metrics.baseline()
                await self._wait(key, window_due(spec, state) - self._clock(), state)
                if self.records[key].state != state or self._clock() < window_due(spec, state):
                    continue  # aborted meanwhile, or woken early
                stats = await self.metrics.window(baseline, spec.service, spec.namespace, spec.canary)
                async with self._lock(key):
                    if self.records[key].state != state:
                        continue
                    decision = on_window(spec, state, stats, self._clock())
                    await self._carry_out(key, decision)
                if decision.verdict != "extend":
                    baseline = None  # a new window (or the end): its baseline comes after the route change
            except asyncio.CancelledError:
                raise
            except StoreError as exc:  # keep going: the decision is retried once the store is back
                log.error("rollout %s: the store failed: %s; retrying", key, exc)
                await self._wait(key, min(5.0, spec.interval))
            except Exception:
                log.exception("rollout %s: unexpected error; retrying", key)
                await self._wait(key, min(5.0, spec.interval))

    async def _carry_out(self, key: str, decision: Decision) -> None:
        """Change the route as decided (a failure ends the rollout ``failed``), then save state and events."""
        record = self.records[key]
        spec = record.spec
        if decision.route.kind != "none":
            try:
                await self._apply_route(spec, decision.route)
            except (RouteError, ConfigError, Conflict) as exc:
                reason = f"could not {decision.verdict}: VirtualService {spec.virtual_service} not changed: {exc}"
                decision = on_failure(record.state, reason, self._clock())
        updated = record.with_decision(decision.state, decision.events)
        await self.store.save(updated)
        self.records[key] = updated
        DECISIONS.labels(decision.verdict).inc()
        if updated.state.done:
            with contextlib.suppress(KeyError):
                CANARY_WEIGHT.remove(spec.namespace, spec.name)
        else:
            CANARY_WEIGHT.labels(spec.namespace, spec.name).set(updated.state.weight)
        for event in decision.events:
            level = logging.WARNING if event.kind in ("rolled_back", "failed", "aborted") else logging.INFO
            log.log(level, "rollout %s: %s", key, event.message, extra={"rollout": key, "event": event.kind})

    async def _apply_route(self, spec: RolloutSpec, action: RouteAction) -> None:
        key = ResourceKey("VirtualService", spec.namespace, spec.virtual_service)
        item = self.plane.state.get(key)
        if item is None:
            raise RouteError(f"VirtualService {spec.namespace}/{spec.virtual_service} was deleted")
        document = rewrite(
            item.resource.document(),
            service=spec.service,
            namespace=spec.namespace,
            stable=spec.stable,
            canary=spec.canary,
            action=action,
            rollout=spec.name,
        )
        await self.plane.apply([parse_resource(document)])

    async def _ready_instances(self, spec: RolloutSpec) -> int:
        """Passing registry instances of the canary subset (its DestinationRule labels)."""
        rule = self._destination_rule(spec)
        subset = None if rule is None else rule[1].subset(spec.canary)
        if subset is None:
            return 0
        try:
            result = await self.plane.client.health_service(spec.service)
        except RegistryError as exc:
            log.info("rollout %s/%s: cannot read the registry: %s", spec.namespace, spec.name, exc)
            return 0
        instances = instances_from_entries(result.value or [])
        return sum(1 for i in instances if exclusion_reason(i, spec.namespace, subset.labels, None) is None)


def describe(record: RolloutRecord, now: float) -> dict[str, Any]:
    """The API's view of a rollout: spec, status (with the time left in the window) and events."""
    out = record.to_json()
    state: RolloutState = record.state
    out["name"] = record.spec.name
    out["namespace"] = record.spec.namespace
    status = out["status"]
    if state.phase == "progressing":
        status["window_ends_in_s"] = round(max(0.0, window_due(record.spec, state) - now), 3)
        status["step_of"] = len(record.spec.steps)
    return out


__all__ = ["NotLeader", "RolloutConflict", "RolloutController", "RolloutMetrics", "RolloutNotFound", "describe"]
