"""The workload agent: registers the sidecar's workload, probes it, reports TTL checks, supervises the app.

Registration (through ``discovery.client``, so it works the same against real Consul): the
instance ``<service>`` with ID ``--service-id`` (default ``<service>-<hostname>-<port>``) at the
advertised address (``--advertise-addr``, default the inbound listener's), with TTL checks
``<id>:readiness`` (name ``readiness``) and ``<id>:liveness`` (name ``liveness``). If the ID
is already registered on the agent (by the registrar, say), only the checks are added to it, and
only they are removed at the end.

Check statuses follow ``ProbeTracker``: readiness critical until its probe passes (so a failing
readiness probe takes the instance out of ``/v1/health/service?passing``, DNS and every sidecar's
endpoints; the app keeps running), liveness passing until its probe fails. A startup probe gates
both: until it passes, readiness is critical and the other probes do not run. A failed liveness
(or startup) probe restarts the app when the sidecar runs it (``-- CMD``), else it turns the
liveness check critical. A status change is sent at once; every status is re-sent every
``refresh`` seconds, well inside the checks' TTL, so a sidecar that dies turns critical.

When someone else deregisters the instance (seen by a blocking watch of its own service, or as a
``404`` on a status update), ``gone`` is set and the sidecar shuts down gracefully (``serve_workload``).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from typing import Any, Final

from discovery.client import NotFound, RegistryClient, RegistryError
from discovery.client_models import CheckRegistration, ServiceRegistration
from mesh.model.probes import ROLES, ProbeRole, WorkloadSpec
from mesh.model.security import TLS_MODE_MESH, TLS_MODE_META
from sidecar.probes import metrics
from sidecar.probes.app import AppProcess
from sidecar.probes.run import run_probe
from sidecar.probes.state import CRITICAL, PASSING, ProbeTracker, Result, Status

log = logging.getLogger("sidecar.probes")

CHECK_TTL: Final = 30.0
REFRESH: Final = 10.0
CheckRole = str  # "readiness" or "liveness": the two registry checks


@dataclass(frozen=True, slots=True)
class Instance:
    """What is registered: service name, instance ID, address and port."""

    service: str
    service_id: str
    address: str
    port: int


def instance_for(service: str, spec: WorkloadSpec, advertise: tuple[str, int]) -> Instance:
    """The instance to register: ``advertise`` is the address others reach the workload at."""
    host, port = advertise
    if host in ("", "0.0.0.0", "::"):  # a wildcard bind: register an address others can use
        try:
            host = socket.gethostbyname(socket.gethostname())
        except OSError:  # the host name does not resolve here: register the name (Consul accepts it)
            host = socket.gethostname()
    service_id = spec.service_id or f"{service}-{socket.gethostname()}-{port}"
    return Instance(service, service_id, host, port)


class WorkloadAgent:
    """See the module doc. ``start`` registers and starts probing; ``begin_shutdown`` then ``close`` end it."""

    def __init__(
        self,
        spec: WorkloadSpec,
        instance: Instance,
        client: RegistryClient,
        *,
        app_grace: float = 10.0,
        check_ttl: float = CHECK_TTL,
        refresh: float = REFRESH,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.spec = spec
        self.instance = instance
        self._client = client
        self._check_ttl = check_ttl
        self._refresh = refresh
        self._clock = clock
        self.trackers: dict[ProbeRole, ProbeTracker] = {}
        for role in ROLES:
            probe = spec.probe(role)
            if probe is not None:
                self.trackers[role] = ProbeTracker(role, probe, clock)
        self.checks: tuple[CheckRole, ...] = tuple(
            role
            for role, wanted in (
                ("readiness", spec.readiness or spec.startup),
                ("liveness", spec.liveness or spec.startup),
            )
            if wanted
        )
        self.app = (
            AppProcess(spec.command, grace=app_grace, backoff=spec.restart_backoff, clock=clock)
            if spec.command
            else None
        )
        self.attached = False  # the instance was registered by someone else: only our checks are ours
        self.registered = False
        self.gone = asyncio.Event()  # the instance was deregistered behind our back
        self._status: dict[CheckRole, tuple[Status, str]] = {}
        self._sent: dict[CheckRole, tuple[Status, str]] = {}
        self._send_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[Any]] = []
        self._shutting_down = False

    def check_id(self, role: CheckRole) -> str:
        return f"{self.instance.service_id}:{role}"

    # === lifecycle ===

    async def start(self) -> None:
        """Register (or attach to) the instance with its checks, start the app, start probing."""
        if self.spec.registers:
            await self._register()
        if self.app is not None:
            await self.app.start()
        self._spawn(self._supervise(), "workload-probes")
        if self.checks:
            self._spawn(self._refresh_loop(), "workload-check-refresh")
        if self.registered:
            self._spawn(self._watch_registration(), "workload-registration-watch")

    async def begin_shutdown(self) -> None:
        """Step 1 of a graceful stop: leave the passing set, then give the change time to reach everyone."""
        self._shutting_down = True
        await self._cancel_tasks()
        if not self.registered or self.gone.is_set():
            return  # nobody sends us traffic because of a registration: nothing to wait for
        if "readiness" in self.checks:
            self._status["readiness"] = (CRITICAL, "the sidecar is shutting down")
            await self._send("readiness")
        else:
            await self._deregister()
        log.info("workload leaving the passing set", extra={"wait_s": self.spec.shutdown_delay})
        if self.spec.shutdown_delay:
            await asyncio.sleep(self.spec.shutdown_delay)

    async def close(self) -> None:
        """The last step (after the listeners drained): stop the app, deregister."""
        await self._cancel_tasks()
        if self.app is not None:
            await self.app.stop()
        if not self.gone.is_set():
            await self._deregister()

    # === registration ===

    async def _register(self) -> None:
        inst = self.instance
        checks = [
            CheckRegistration(
                name=role,
                check_id=self.check_id(role),
                ttl=self._check_ttl,
                status=self._initial(role)[0],
                notes=self._notes(role),
            )
            for role in self.checks
        ]
        for role in self.checks:
            self._status[role] = self._sent[role] = self._initial(role)
        existing = await self._client.agent_service(inst.service_id) if self.spec.service_id else None
        if existing is not None:
            self.attached = True
            for check in checks:
                await self._client.register_check(_for_service(check, inst.service_id))
        else:
            service = ServiceRegistration(
                name=inst.service,
                id=inst.service_id,
                address=inst.address,
                port=inst.port,
                # The address is the sidecar's inbound listener: callers' sidecars speak mTLS to it (auto-mTLS).
                meta={"mesh-sidecar": "true", TLS_MODE_META: TLS_MODE_MESH},
                checks=checks,
            )
            await self._client.register_service(service)
        self.registered = True
        log.info(
            "workload registered",
            extra={"service_id": inst.service_id, "attached": self.attached, "checks": list(self.checks)},
        )
        for role in self.checks:  # the initial output says what is awaited
            await self._send(role, force=True)

    async def _deregister(self) -> None:
        if not self.registered:
            return
        self.registered = False
        try:
            if self.attached:
                for role in self.checks:
                    await self._client.deregister_check(self.check_id(role))
            else:
                await self._client.deregister_service(self.instance.service_id)
            log.info("workload deregistered", extra={"service_id": self.instance.service_id})
        except NotFound:
            pass
        except RegistryError as exc:
            log.warning("could not deregister the workload", extra={"error": str(exc)})

    def _initial(self, role: CheckRole) -> tuple[Status, str]:
        if role == "readiness":
            if "startup" in self.trackers:
                return CRITICAL, "waiting for the startup probe"
            if "readiness" not in self.trackers:
                return PASSING, "no readiness probe: ready once started"
            return CRITICAL, "readiness probe not run yet"
        if "liveness" not in self.trackers:
            return PASSING, "no liveness probe"
        return PASSING, "liveness probe not run yet"

    def _notes(self, role: CheckRole) -> str:
        parts = [f"{r}: {t.spec.describe()}" for r, t in self.trackers.items() if r in (role, "startup")]
        return "mesh sidecar probe; " + "; ".join(parts)

    # === reporting ===

    async def _set(self, role: CheckRole, status: Status, output: str) -> None:
        if role not in self.checks or self._shutting_down:
            return
        self._status[role] = (status, output)
        await self._send(role)

    async def _send(self, role: CheckRole, *, force: bool = False) -> None:
        async with self._send_lock:
            current = self._status[role]
            if not force and self._sent.get(role) == current:
                return
            try:
                await self._client.update_ttl(self.check_id(role), current[0], current[1])
                self._sent[role] = current
                metrics.set_check_status(role, current[0])
            except NotFound:
                if not self._shutting_down:
                    log.warning("the workload was deregistered: shutting down", extra={"check": self.check_id(role)})
                    self.gone.set()
            except RegistryError as exc:  # unreachable for now: the refresh loop sends it again
                log.warning("could not report a check", extra={"check": self.check_id(role), "error": str(exc)})

    async def _watch_registration(self) -> None:
        """Notice at once when someone else deregisters the instance (or, attached, removes our checks).

        Only after the instance was seen: a Consul agent syncs registrations to the catalog shortly
        after answering, so the first read may not show it yet.
        """
        ours = {self.check_id(role) for role in self.checks}
        seen = False
        async for result in self._client.watch_health_service(self.instance.service, passing=False):
            entry = next((e for e in result.value if e.service.id == self.instance.service_id), None)
            present = entry is not None and ours <= {check.check_id for check in entry.checks}
            seen = seen or present
            if seen and not present and not self._shutting_down:
                log.warning("the workload was deregistered: shutting down", extra={"id": self.instance.service_id})
                self.gone.set()
                return

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self._refresh)
            for role in self.checks:
                await self._send(role, force=True)

    # === probing ===

    async def _supervise(self) -> None:
        """One turn per life of the app: probe it until it must be restarted, restart it, go again."""
        while True:
            for tracker in self.trackers.values():
                tracker.restart()
            for role in self.checks:
                await self._set(role, *self._initial(role))
            probing = asyncio.create_task(self._probe_life(), name="workload-probe-life")
            waited: set[asyncio.Task[Any]] = {probing}
            exited: asyncio.Task[int] | None = None
            if self.app is not None:
                exited = asyncio.create_task(self.app.wait(), name="workload-app-wait")
                waited.add(exited)
            try:
                await asyncio.wait(waited, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in waited:
                    task.cancel()
                await asyncio.gather(*waited, return_exceptions=True)
            if self.app is None:
                return  # nothing to restart: the probe life ends only by cancellation
            if exited is not None and exited.done() and not exited.cancelled():
                status = exited.result()
                await self._set("readiness", CRITICAL, f"the app exited with status {status}; restarting")
                metrics.APP_RESTARTS.labels("exited").inc()
                await self.app.restart_after_crash(status)
            else:
                reason = probing.result() if probing.done() and not probing.cancelled() else "probe failed"
                await self._set("readiness", CRITICAL, f"restarting the app: {reason}")
                await self._set("liveness", CRITICAL, f"restarting the app: {reason}")
                metrics.APP_RESTARTS.labels("startup" if reason.startswith("startup") else "liveness").inc()
                await self.app.restart(reason)

    async def _probe_life(self) -> str:
        """Probe one life of the app; returns why it must be restarted (only when the sidecar runs it)."""
        supervised = self.app is not None
        startup = self.trackers.get("startup")
        if startup is not None:
            started = await self._run(startup)
            if not started:
                reason = f"startup probe failed: {startup.output}"
                if supervised:
                    return reason
                await self._set("liveness", CRITICAL, reason)
                await self._run(startup, until_passing=True)
            if "readiness" not in self.trackers:
                await self._set("readiness", PASSING, "startup probe passed; no readiness probe")
            if "liveness" not in self.trackers:
                await self._set("liveness", PASSING, "startup probe passed; no liveness probe")
        loops: list[Coroutine[Any, Any, str]] = []
        if "readiness" in self.trackers:
            loops.append(self._run_reporting(self.trackers["readiness"], "readiness", stop_on_failure=False))
        if "liveness" in self.trackers:
            loops.append(self._run_reporting(self.trackers["liveness"], "liveness", stop_on_failure=supervised))
        if not loops:
            await asyncio.Event().wait()  # nothing more to probe: live until cancelled
        tasks = [asyncio.create_task(loop) for loop in loops]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            return next(iter(done)).result()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, tracker: ProbeTracker, *, until_passing: bool = False) -> bool:
        """Run the startup probe until it passes (True) or fails for good (False; or keep on with ``until_passing``)."""
        await asyncio.sleep(tracker.first_probe_in())
        while True:
            began = self._clock()
            tracker.record(await self._probe(tracker))
            if tracker.status != CRITICAL:
                log.info("startup probe passed", extra={"output": tracker.output})
                return True
            if not until_passing and tracker.failed:
                return False
            await asyncio.sleep(max(0.0, tracker.spec.period - (self._clock() - began)))

    async def _run_reporting(self, tracker: ProbeTracker, role: CheckRole, *, stop_on_failure: bool) -> str:
        """Probe every period and report; returns when liveness fails and the app must be restarted."""
        await asyncio.sleep(tracker.first_probe_in())
        while True:
            began = self._clock()
            changed = tracker.record(await self._probe(tracker))
            if changed:
                log.info(f"{role} probe now {tracker.status}", extra={"output": tracker.output})
            await self._set(role, tracker.status, tracker.output)
            if stop_on_failure and tracker.status == CRITICAL:
                return f"liveness probe failed: {tracker.output}"
            await asyncio.sleep(max(0.0, tracker.spec.period - (self._clock() - began)))

    async def _probe(self, tracker: ProbeTracker) -> Result:
        try:
            result = await run_probe(tracker.spec)
        except Exception as exc:  # a bug in a probe must not stop probing: it is a failed probe
            log.exception("probe raised", extra={"probe": tracker.role})
            result = Result(CRITICAL, f"{tracker.spec.describe()}: probe error: {type(exc).__name__}: {exc}")
        metrics.PROBE_RESULTS.labels(tracker.role, result.status).inc()
        return result

    # === tasks ===

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        self._tasks.append(asyncio.create_task(coro, name=name))

    async def _cancel_tasks(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for result in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(result, Exception):
                log.error("workload task failed", exc_info=result)


def _for_service(check: CheckRegistration, service_id: str) -> CheckRegistration:
    return replace(check, service_id=service_id)


__all__ = ["CHECK_TTL", "REFRESH", "Instance", "WorkloadAgent", "instance_for"]
