"""The reconciler: makes the registry hold exactly the services the running containers should have.

- ``submit(container_id)`` (after a Docker event, or for every container in a full sync)
  inspects the container, computes its desired services (``desired``), plans against what we own
  (``diff``) and writes the difference. Runs are serialized per container (``workqueue``).
- Start fast path: every inspect is kept (``create`` events are inspected too). A run that answers
  a single ``start`` event predicts the running state from that inspect when the configuration fixes
  everything (``started``: fixed host ports, no HEALTHCHECK ...), writes at once, then confirms with
  a real inspect; anything else inspects first. Under load Docker takes tens of ms to answer an inspect.
- ``full_sync()`` re-reads what we own from the registry (a snapshot taken while no write of ours
  is in flight), optionally removes Registrator leftovers (``--cleanup``), then reconciles every
  running container and every container we own services for. It runs at start, after each Docker
  reconnect, after the registry comes back, and every ``--resync`` seconds.
- What we own is cached write-through, one owner per service ID; writes to one ID are serialized
  across containers, so a container name re-used by a new container never loses its registration
  to the old one's removal.
- When the registry is unreachable the reconciler stops writing, probes it with backoff and runs a
  full sync when it answers again: the desired state is recomputed from Docker then, not replayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import replace
from typing import Final

from discovery.client import RegistryClient
from discovery.client_models import AgentService, NotFound, RegistryError, RegistryUnavailable
from discovery.registrar import metrics
from discovery.registrar.attributes import Problem
from discovery.registrar.config import RegistrarConfig
from discovery.registrar.container import Container
from discovery.registrar.desired import Desired, DesiredService, Rules, desired_services
from discovery.registrar.diff import Plan, plan_container, registrator_leftovers
from discovery.registrar.docker_source import DockerClient, DockerEvent, DockerUnavailable
from discovery.registrar.locks import KeyedLocks, SharedExclusiveLock
from discovery.registrar.ownership import OwnedService, health_check_id, heartbeat_check_id, owned_services
from discovery.registrar.started import predict_started
from discovery.registrar.workqueue import Job, KeyedWorkQueue

log = logging.getLogger("discovery.registrar")

PROBE_BACKOFF_BASE: Final = 0.2
PROBE_BACKOFF_CAP: Final = 5.0
RUNNING_STATES: Final = frozenset({"running", "paused", "restarting"})


class Reconciler:
    def __init__(self, client: RegistryClient, config: RegistrarConfig, rules: Rules, *, concurrency: int = 16) -> None:
        self._client = client
        self._config = config
        self._rules = rules
        self._docker: DockerClient | None = None
        self._queue = KeyedWorkQueue(self._run, concurrency=concurrency)
        self._gate = SharedExclusiveLock()
        self._ids = KeyedLocks()
        self._by_service: dict[str, OwnedService] = {}
        self._by_container: dict[str, set[str]] = {}
        self._live: dict[str, tuple[DesiredService, ...]] = {}  # running containers' services, for TTL refresh
        self._reported: dict[str, frozenset[Problem]] = {}
        # The latest inspect of each container Docker knows: its create-time configuration serves
        # the start fast path (``started``). Refreshed by every inspect, dropped when it is gone.
        self._inspected: dict[str, Container] = {}
        self._probe: asyncio.Task[None] | None = None
        self.registry_ok = True
        self.synced = asyncio.Event()  # set after the first successful full sync
        metrics.REGISTRY_REACHABLE.set(1)

    # === inputs ===

    def attach(self, docker: DockerClient) -> None:
        self._docker = docker

    def detach(self) -> None:
        self._docker = None

    def submit(
        self, container_id: str, *, sync: bool = False, event: DockerEvent | None = None
    ) -> asyncio.Future[None]:
        """Reconcile this container soon; ``event`` is the Docker event that asked (for hints and the lag metric)."""
        # A create only primes the start fast path: Docker's own start time is not registration lag.
        event_ns = event.time_ns if event is not None and event.action != "create" else None
        return self._queue.submit(container_id, sync=sync, event_ns=event_ns, hint=event)

    def owned(self, container_id: str) -> dict[str, OwnedService]:
        return {sid: self._by_service[sid] for sid in self._by_container.get(container_id, ())}

    @property
    def service_count(self) -> int:
        return len(self._by_service)

    # === full sync ===

    async def full_sync(self) -> bool:
        """Reconcile everything; ``False`` if Docker or the registry failed (a later sync retries)."""
        started = time.monotonic()
        docker = self._docker
        if docker is None or not self.registry_ok:
            return False
        try:
            containers = await docker.list_containers()
        except DockerUnavailable as exc:
            log.warning("full sync: cannot list containers: %s", exc)
            metrics.ERRORS.labels("docker").inc()
            metrics.RECONCILES.labels("full", "error").inc()
            return False
        try:
            async with self._gate.exclusive():
                services = await self._client.agent_services()
                checks = await self._client.agent_checks()
                self._replace_owned(owned_services(services, checks, self._rules.hostname))
        except RegistryError as exc:
            self._registry_failed(exc)
            metrics.RECONCILES.labels("full", "error").inc()
            return False
        known = {c.id for c in containers}
        for gone in [cid for cid in self._inspected if cid not in known]:
            del self._inspected[gone]
        running = {c.name for c in containers if c.state in RUNNING_STATES}
        removed = await self._cleanup(services, running) if self._config.cleanup else 0
        keys = {c.id for c in containers if c.state in RUNNING_STATES} | set(self._by_container)
        await asyncio.gather(*(self.submit(key, sync=True) for key in keys))
        ok = self.registry_ok and self._docker is docker
        metrics.RECONCILES.labels("full", "ok" if ok else "error").inc()
        if ok:
            self.synced.set()
        log.info(
            "full sync done" if ok else "full sync incomplete",
            extra={
                "containers": len(keys),
                "services": len(self._by_service),
                "leftovers_removed": removed,
                "ms": round((time.monotonic() - started) * 1000, 1),
            },
        )
        return ok

    async def _cleanup(self, services: dict[str, AgentService], running: set[str]) -> int:
        leftovers = registrator_leftovers(services, hostname=self._rules.hostname, running_names=running)
        removed = 0
        for service_id in leftovers:
            async with self._gate.shared(), self._ids.hold(service_id):
                if service_id in self._by_service:
                    continue  # claimed by one of our containers meanwhile
                try:
                    await self._client.deregister_service(service_id)
                except NotFound:
                    pass
                except RegistryError as exc:
                    self._registry_failed(exc)
                    break
            metrics.WRITES.labels("deregister").inc()
            removed += 1
            log.info("removed leftover registration (--cleanup)", extra={"service_id": service_id})
        return removed

    # === one container ===

    async def _run(self, container_id: str, job: Job) -> None:
        docker = self._docker
        if docker is None or not self.registry_ok:
            return  # the resync after reconnect / registry recovery covers this container
        hint = job.hint if isinstance(job.hint, DockerEvent) else None
        run_ns = time.time_ns()
        predicted = self._predict_start(container_id, hint, job)
        try:
            container = predicted or await self._current_state(docker, container_id, hint)
        except DockerUnavailable as exc:
            log.debug("inspect %s failed: %s", container_id[:12], exc)
            metrics.ERRORS.labels("docker").inc()
            metrics.RECONCILES.labels("container", "error").inc()
            return
        inspected_ns = time.time_ns()
        desired = desired_services(container, self._rules) if container is not None else Desired()
        self._report(container_id, container, desired)
        try:
            async with self._gate.shared():
                plan = plan_container(
                    container,
                    desired.services,
                    self.owned(container_id),
                    mode=self._config.deregister,
                    cleanup=self._config.cleanup,
                    sync=job.sync,
                )
                planned_ns = time.time_ns()
                await self._apply(container_id, container, plan, job.event_ns)
        except RegistryError as exc:
            self._registry_failed(exc, container)
            metrics.RECONCILES.labels("container", "error").inc()
            return
        if hint is not None and log.isEnabledFor(logging.DEBUG):
            _trace(container_id, hint, plan, predicted is not None, (run_ns, inspected_ns, planned_ns, time.time_ns()))
        if predicted is not None:
            self.submit(container_id)  # confirm the prediction with a real inspect (it corrects a wrong one)
        if desired.services:
            self._live[container_id] = desired.services
        else:
            self._live.pop(container_id, None)
        metrics.RECONCILES.labels("container", "ok").inc()

    async def _apply(self, container_id: str, container: Container | None, plan: Plan, event_ns: int | None) -> None:
        if plan.empty:
            return
        results = await asyncio.gather(
            *(self._register(container_id, d, event_ns) for d in plan.register),
            *(self._deregister(container_id, sid, event_ns) for sid in plan.deregister),
            *(self._set_health(container_id, h.service_id, h.check_id, h.status, h.output) for h in plan.health),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        name = container.name if container is not None else container_id[:12]
        if plan.register or plan.deregister:
            log.info(
                "container %s: registered %d, deregistered %d",
                name,
                len(plan.register),
                len(plan.deregister),
                extra={
                    "container": name,
                    "registered": [d.service_id for d in plan.register],
                    "deregistered": list(plan.deregister),
                },
            )
        if plan.kept:
            log.info(
                "container %s exited with %d: keeping its services (--deregister on-success)",
                name,
                container.exit_code if container is not None else 0,
                extra={"container": name, "kept": list(plan.kept)},
            )

    async def _register(self, container_id: str, want: DesiredService, event_ns: int | None) -> None:
        service_id = want.service_id
        async with self._ids.hold(service_id):
            # Claim first with an unknown digest: if the write fails we still own (and retry) it.
            self._claim(OwnedService(service_id, container_id, ""))
            started = time.perf_counter()
            await self._client.register_service(want.body(), replace_existing_checks=True)
            metrics.WRITE_SECONDS.labels("register").observe(time.perf_counter() - started)
            self._claim(OwnedService(service_id, container_id, want.digest, want.health))
        metrics.WRITES.labels("register").inc()
        _observe_lag("register", event_ns)

    async def _deregister(self, container_id: str, service_id: str, event_ns: int | None) -> None:
        async with self._ids.hold(service_id):
            owner = self._by_service.get(service_id)
            if owner is not None and owner.container_id != container_id:
                self._by_container.get(container_id, set()).discard(service_id)
                return  # another container registered this ID since: it is theirs now
            started = time.perf_counter()
            with contextlib.suppress(NotFound):  # already gone (removed by someone else): the goal is met
                await self._client.deregister_service(service_id)
            metrics.WRITE_SECONDS.labels("deregister").observe(time.perf_counter() - started)
            self._forget(service_id)
        metrics.WRITES.labels("deregister").inc()
        _observe_lag("deregister", event_ns)

    async def _set_health(self, container_id: str, service_id: str, check_id: str, status: str, output: str) -> None:
        async with self._ids.hold(service_id):
            try:
                await self._client.update_ttl(check_id, status, output)
            except NotFound:
                # The check is gone (the service was removed behind our back): register again.
                owner = self._by_service.get(service_id)
                if owner is not None:
                    self._by_service[service_id] = replace(owner, digest="")
                self.submit(container_id)
                return
            owner = self._by_service.get(service_id)
            if owner is not None:
                self._by_service[service_id] = replace(owner, health=status)
        metrics.WRITES.labels("health").inc()

    # === TTL refresh (--ttl heartbeat, docker-health re-assertion) ===

    async def refresh_ttls(self) -> None:
        """Pass every heartbeat check and re-assert every docker-health status of running containers."""
        if not self.registry_ok:
            return
        for container_id, services in list(self._live.items()):
            for want in services:
                owner = self._by_service.get(want.service_id)
                if owner is None or owner.container_id != container_id or owner.digest != want.digest:
                    continue  # not (yet) registered as wanted: the reconcile will write it whole
                try:
                    if want.heartbeat:
                        await self._client.ttl_pass(heartbeat_check_id(want.service_id), "container running")
                        metrics.WRITES.labels("heartbeat").inc()
                    if want.health is not None:
                        await self._set_health(
                            container_id,
                            want.service_id,
                            health_check_id(want.service_id),
                            want.health,
                            want.health_output,
                        )
                except NotFound:
                    self._by_service[want.service_id] = replace(owner, digest="")
                    self.submit(container_id)
                except RegistryError as exc:
                    self._registry_failed(exc)
                    return

    # === shutdown ===

    async def drain(self, timeout: float) -> bool:
        """Wait until no reconcile is queued or running (or ``timeout``); ``True`` if it got idle."""
        return await self._queue.drain(timeout)

    async def deregister_all(self) -> int:
        """Remove every service we own (``--deregister-on-exit``); returns how many went."""
        removed = 0
        for service_id in sorted(self._by_service):
            try:
                await self._client.deregister_service(service_id)
            except NotFound:
                pass
            except RegistryError as exc:
                log.warning("could not deregister %s on exit: %s", service_id, exc)
                continue
            self._forget(service_id)
            removed += 1
        return removed

    async def close(self) -> None:
        await self._queue.close()
        if self._probe is not None:
            self._probe.cancel()
            await asyncio.gather(self._probe, return_exceptions=True)

    # === registry outages ===

    def _registry_failed(self, exc: RegistryError, container: Container | None = None) -> None:
        metrics.ERRORS.labels("registry").inc()
        if not isinstance(exc, RegistryUnavailable):
            # The registry refused what we sent: a bug on our side or an ACL problem, not an outage.
            name = container.name if container is not None else ""
            log.error("registry refused a write: %s", exc, extra={"container": name})
            return
        if self.registry_ok:
            log.warning("registry unreachable, keeping the desired state and retrying: %s", exc)
        self.registry_ok = False
        metrics.REGISTRY_REACHABLE.set(0)
        if self._probe is None or self._probe.done():
            self._probe = asyncio.create_task(self._wait_for_registry(), name="registry-probe")

    async def _wait_for_registry(self) -> None:
        attempt = 0
        while True:
            delay = random.uniform(0.5, 1.0) * min(PROBE_BACKOFF_CAP, PROBE_BACKOFF_BASE * 2.0 ** min(attempt, 16))
            await asyncio.sleep(delay)
            attempt += 1
            try:
                await self._client.leader()
            except RegistryError:
                continue
            log.info("registry reachable again after %d probes: resyncing", attempt)
            self.registry_ok = True
            metrics.REGISTRY_REACHABLE.set(1)
            if self._docker is None or await self.full_sync():
                return  # synced, or Docker is away: its reconnect will sync
            if self.registry_ok:
                return  # Docker failed the sync: its reconnect will sync again
            attempt = 0

    # === the container's state ===

    def _predict_start(self, container_id: str, hint: DockerEvent | None, job: Job) -> Container | None:
        """The started container without asking Docker, when this run answers exactly one ``start``
        event and its last inspect fixed everything that matters (``started.predict_started``)."""
        if hint is None or hint.action != "start" or job.submissions != 1 or job.sync:
            return None  # a rename, die ... merged in: what was inspected before may be out of date
        inspected = self._inspected.get(container_id)
        predicted = predict_started(inspected, self._rules) if inspected is not None else None
        metrics.START_PATH.labels("predicted" if predicted is not None else "inspect").inc()
        return predicted

    async def _current_state(
        self, docker: DockerClient, container_id: str, hint: DockerEvent | None
    ) -> Container | None:
        """Inspect the container, unless its latest event already says enough.

        After ``die`` the container does not run and the event carries the exit code; after
        ``destroy`` it is gone. Inspecting a container that is being torn down waits for Docker's
        cleanup (~100-200 ms here), which would keep a dead endpoint in the registry that much longer.
        """
        if hint is not None and hint.action == "destroy":
            self._inspected.pop(container_id, None)
            return None
        if hint is not None and hint.action == "die":
            return Container(
                id=container_id,
                name=hint.name or container_id[:12],
                image="",
                status="exited",
                exit_code=hint.exit_code or 0,
            )
        started = time.perf_counter()
        container = await docker.inspect(container_id)
        metrics.INSPECT_SECONDS.observe(time.perf_counter() - started)
        if container is None:
            self._inspected.pop(container_id, None)
        else:
            # Without the raw JSON: predictions never read it (no --tags template that could), and
            # thousands of cached inspect trees would only slow the garbage collector down.
            self._inspected[container_id] = replace(container, raw={})
        return container

    # === cache ===

    def _claim(self, owned: OwnedService) -> None:
        previous = self._by_service.get(owned.service_id)
        if previous is not None and previous.container_id != owned.container_id:
            self._by_container.get(previous.container_id, set()).discard(owned.service_id)
        self._by_service[owned.service_id] = owned
        self._by_container.setdefault(owned.container_id, set()).add(owned.service_id)
        metrics.SERVICES.set(len(self._by_service))

    def _forget(self, service_id: str) -> None:
        owned = self._by_service.pop(service_id, None)
        if owned is not None:
            ids = self._by_container.get(owned.container_id)
            if ids is not None:
                ids.discard(service_id)
                if not ids:
                    del self._by_container[owned.container_id]
        metrics.SERVICES.set(len(self._by_service))

    def _replace_owned(self, owned: dict[str, dict[str, OwnedService]]) -> None:
        self._by_service = {sid: o for services in owned.values() for sid, o in services.items()}
        self._by_container = {cid: set(services) for cid, services in owned.items()}
        metrics.SERVICES.set(len(self._by_service))

    # === reporting ===

    def _report(self, container_id: str, container: Container | None, desired: Desired) -> None:
        """Warn once about each bad attribute of a container (not again on every event or sync)."""
        if container is None:
            self._reported.pop(container_id, None)
            return
        seen = self._reported.get(container_id, frozenset())
        new = [p for p in desired.problems if p not in seen]
        if desired.problems or seen:
            self._reported[container_id] = frozenset(desired.problems)
        for problem in new:
            metrics.ATTRIBUTE_WARNINGS.inc()
            log.warning(
                "container %s: %s %s",
                container.name,
                problem.attribute,
                problem.message,
                extra={"container": container.name, "container_id": container.short_id, "attribute": problem.attribute},
            )
        if desired.skipped and container.running and log.isEnabledFor(logging.DEBUG):
            log.debug("container %s: skipped: %s", container.name, "; ".join(desired.skipped))


def _trace(
    container_id: str, event: DockerEvent, plan: Plan, predicted: bool, stamps: tuple[int, int, int, int]
) -> None:
    """One debug line per event-driven reconcile: where its time went, in ms after the event's timestamp."""
    run_ns, inspected_ns, planned_ns, done_ns = stamps

    def after_event(ns: int) -> float:
        return round((ns - event.time_ns) / 1e6, 2)

    log.debug(
        "reconcile stages",
        extra={
            "container_id": container_id[:12],
            "action": event.action,
            "writes": len(plan.register) + len(plan.deregister) + len(plan.health),
            "predicted": predicted,
            "received_ms": after_event(event.received_ns) if event.received_ns else None,
            "run_ms": after_event(run_ns),
            "inspected_ms": after_event(inspected_ns),
            "planned_ms": after_event(planned_ns),
            "acked_ms": after_event(done_ns),
        },
    )


def _observe_lag(op: str, event_ns: int | None) -> None:
    if event_ns:
        metrics.EVENT_LAG.labels(op).observe(max(0.0, (time.time_ns() - event_ns) / 1e9))


__all__ = ["Reconciler"]
