"""A sidecar with a workload agent: the graceful shutdown sequence around ``serve_plan``.

On SIGTERM/SIGINT, or when the instance is deregistered by someone else (then 1 and 2 are skipped):

1. the readiness check turns critical (no readiness check: the instance is deregistered), so the
   health API, DNS and other sidecars stop sending new traffic;
2. ``--shutdown-delay`` seconds (default 2) pass while the listeners still serve, for that change
   to reach everyone (Kubernetes' preStop sleep);
3. the sidecar's existing drain (the one ``POST /drain`` runs) stops accepting, closes idle
   keep-alive connections and lets in-flight requests finish, up to ``--drain-timeout`` (10 s);
4. the supervised app (``-- CMD``) gets SIGTERM (SIGKILL after the same grace), the instance (or,
   when attached to someone else's registration, our checks) is deregistered, and the process exits.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from discovery.client import RegistryClient, RegistryError
from discovery.client_config import ClientConfig
from discovery.runtime.addresses import split_host_port
from discovery.runtime.lifecycle import run_until_signalled
from mesh.model.probes import WorkloadSpec, check_host_port
from sidecar.probes.agent import WorkloadAgent, instance_for
from sidecar.workers import SidecarPlan, serve_plan

log = logging.getLogger("sidecar.probes")

REGISTER_RETRY = (0.5, 5.0)  # first and longest wait between registration attempts


def run_with_workload(plan: SidecarPlan, spec: WorkloadSpec) -> int:
    """``run_sidecar`` for a sidecar with a workload agent (one process: ``--workers 1``)."""
    status: list[int] = []

    async def main(stop: asyncio.Event) -> None:
        status.append(await serve_workload(plan, spec, stop))

    run_until_signalled(main)
    return status[0] if status else 1


def advertised(plan: SidecarPlan, spec: WorkloadSpec) -> tuple[str, int]:
    """``--advertise-addr``, else the inbound listener's address."""
    if spec.advertise:
        return check_host_port(spec.advertise, "--advertise-addr")
    if not plan.settings.app_port:
        raise ValueError("--advertise-addr: needed to register a workload without --app-port")
    host, port = split_host_port(plan.settings.inbound_addr, name="--inbound-addr")
    if not port:
        raise ValueError("--advertise-addr: needed when --inbound-addr has port 0")
    return host, port


async def serve_workload(
    plan: SidecarPlan, spec: WorkloadSpec, stop: asyncio.Event, client: RegistryClient | None = None
) -> int:
    """Serve ``plan`` with the workload agent until ``stop``, then the shutdown sequence (module doc).

    Returns the exit status: 0, or 1 when the app could not be started.
    """
    own_client = client is None
    registry = client if client is not None else RegistryClient(ClientConfig.from_env())
    where = advertised(plan, spec) if spec.registers else ("127.0.0.1", 0)  # an app command alone: no registration
    instance = instance_for(plan.settings.service, spec, where)
    agent = WorkloadAgent(spec, instance, registry, app_grace=plan.server.drain_timeout_s)
    status = 0
    listeners_stop = asyncio.Event()
    serving = asyncio.create_task(serve_plan(plan, listeners_stop), name="sidecar")
    try:
        starting = asyncio.create_task(_start(agent), name="workload-start")
        waits: list[asyncio.Task[Any]] = [
            starting,
            serving,
            asyncio.create_task(stop.wait()),
        ]
        done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        if starting in done and starting.exception() is not None:
            log.error("the workload could not be started", exc_info=starting.exception())
            status = 1
        elif starting in done:
            gone = asyncio.create_task(agent.gone.wait())
            waits = [serving, waits[2], gone]
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for task in waits:
            if task is not serving:
                task.cancel()
        starting.cancel()
        await asyncio.gather(starting, return_exceptions=True)
        if not serving.done():
            await agent.begin_shutdown()
    finally:
        listeners_stop.set()
        try:
            await serving
        except Exception:  # the proxy itself failed (a port in use, say): logged, and the exit status says so
            log.exception("the sidecar stopped with an error")
            status = 1
        await agent.close()
        if own_client:
            await registry.close()
    return status


async def _start(agent: WorkloadAgent) -> None:
    """Register, retrying while the registry cannot be reached (the sidecar serves meanwhile)."""
    wait = REGISTER_RETRY[0]
    while True:
        try:
            await agent.start()
            return
        except RegistryError as exc:
            log.warning("could not register the workload; retrying", extra={"error": str(exc), "retry_s": wait})
        await asyncio.sleep(wait)
        wait = min(REGISTER_RETRY[1], wait * 2)


__all__ = ["advertised", "run_with_workload", "serve_workload"]
