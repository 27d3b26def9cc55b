"""The control plane's state and operations, independent of HTTP: config changes, sidecars, explain.

Writes are serialized by one lock; each is planned on the state in force (``mesh.control.changes``),
committed by the store, then swapped in, which marks every sidecar profile for recomputation.
With a shared store a commit can lose the race to another replica (``StaleState``): the state is
re-read and the request re-planned, so validation always runs on the newest configuration.
Configurations committed by other replicas arrive through ``store.watch`` and are swapped in the
same way.

With a shared store, sidecar status is shared too (``mesh.control.status_share``): each replica
publishes its sidecars' entries in Consul KV, and ``cluster_status`` merges every live
replica's, so ``GET /v1/mesh/status`` on any replica shows every sidecar.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from discovery.client import RegistryClient
from discovery.client_models import RegistryError
from mesh.control import metrics
from mesh.control.changes import Plan, plan_apply, plan_delete
from mesh.control.explain import explain_request
from mesh.control.explain_security import security_view
from mesh.control.jwks import DEFAULT_REFRESH_S, KeySetCache
from mesh.control.push import Pusher
from mesh.control.sidecars import SidecarRecord, demand_name
from mesh.control.state import ConfigState
from mesh.control.status_share import StatusShare, merge_sidecars
from mesh.control.store import RuleStore, StaleState, StoreError
from mesh.control.translate import Profile, Translation
from mesh.control.vips import ServiceVips, parse_range
from mesh.control.watches import ServiceWatches
from mesh.model.hosts import split_host_port
from mesh.model.parse import parse_snapshot
from mesh.model.snapshot import OutboundPolicy
from mesh.rules.resource import KINDS, Resource, ResourceKey
from mesh.rules.ruleset import RuleSet
from mesh.security.identity import DEFAULT_TRUST_DOMAIN, IdentityError, SpiffeId

log = logging.getLogger("mesh.control")

_COMMIT_ATTEMPTS = 10
DEFAULT_BOOTSTRAP = {
    "listeners": [
        {"name": "outbound", "protocol": "http", "host": "127.0.0.1", "port": 15001, "route_table": "outbound"}
    ],
    "route_tables": [{"name": "outbound", "virtual_hosts": []}],
}
"""What ``explain`` assumes of a source with no registered sidecar: the standard outbound listener."""


@dataclass(frozen=True)
class PlaneSettings:
    registry_wait: float | None = None  # blocking-query wait of registry watches (None: Consul's default)
    watch_linger: float = 60.0
    coalesce: float = 0.002
    first_answer_timeout: float = 2.0
    sync_wait_max: float = 300.0
    forget_after: float = 600.0  # drop sidecars not heard from for this long
    connected_within: float = 90.0  # a sidecar seen this recently counts as connected
    status_ttl: float = 15.0  # shared status: a replica without a heartbeat for this long is dead
    status_flush: float = 0.5  # shared status: how often changed sidecar entries are published
    jwks_refresh: float = DEFAULT_REFRESH_S  # how often RequestAuthentication key sets are fetched again
    outbound_traffic_policy: OutboundPolicy = "REGISTRY_ONLY"  # for Hosts no route knows (docs/control-plane.md)
    service_vip_range: str = ""  # CIDR of service virtual IPs ("" none; mesh.control.vips)


class ControlPlane:
    def __init__(self, store: RuleStore, client: RegistryClient, settings: PlaneSettings | None = None) -> None:
        self.store = store
        self.client = client
        self.settings = settings or PlaneSettings()
        self.state = ConfigState()
        self.watches = ServiceWatches(
            client, self._service_changed, wait=self.settings.registry_wait, linger=self.settings.watch_linger
        )
        self.pusher = Pusher(
            lambda: self.state,
            self.watches,
            coalesce=self.settings.coalesce,
            first_answer_timeout=self.settings.first_answer_timeout,
        )
        self.key_sets = KeySetCache(self._context_changed, refresh_s=self.settings.jwks_refresh)
        self.vips: ServiceVips | None = None
        if self.settings.service_vip_range:
            network = parse_range(self.settings.service_vip_range)
            self.vips = ServiceVips(client, network, self._context_changed, wait=self.settings.registry_wait)
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self.ready = False
        self.replica = ""  # this control plane's name in status (set by the server once it listens)
        self.share: StatusShare | None = None
        self.trust_domain = DEFAULT_TRUST_DOMAIN  # of the identities explain shows (the CA's, set by the server)

    # === lifecycle ===

    async def start(self) -> None:
        self._swap(await self.store.open())
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self.pusher.run(), name="control-push"),
            loop.create_task(self._follow_store(), name="control-store-watch"),
            loop.create_task(self._sweep(), name="control-sweep"),
        ]
        if self.vips is not None:
            self.vips.start()
        self.ready = True

    def begin_shutdown(self) -> None:
        """Stop serving long polls: parked ones answer now (503), so sidecars go elsewhere."""
        self.ready = False
        for record in list(self.pusher.sidecars.values()):
            record.wake.set()

    async def stop(self) -> None:
        self.begin_shutdown()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self.share is not None:
            await self.share.close()
        await self.key_sets.close()
        if self.vips is not None:
            await self.vips.close()
        await self.watches.close()
        await self.store.close()

    # === configuration ===

    async def apply(self, resources: Sequence[Resource], *, dry_run: bool = False) -> Plan:
        """Apply all of ``resources`` or none; ``dry_run`` validates and plans only."""
        await self.key_sets.ensure(resources)  # a JWT rule's keys must be fetchable before it is accepted
        async with self._lock:
            for _ in range(_COMMIT_ATTEMPTS):
                plan = plan_apply(self.state, resources, _now())
                if dry_run or not plan.changed:
                    return plan
                if await self._commit(plan):
                    return plan
        raise StoreError("the configuration kept changing under this apply; try again")

    async def delete(self, key: ResourceKey, resource_version: str | None = None, *, dry_run: bool = False) -> Plan:
        async with self._lock:
            for _ in range(_COMMIT_ATTEMPTS):
                plan = plan_delete(self.state, key, resource_version)
                if dry_run:
                    return plan
                if await self._commit(plan):
                    return plan
        raise StoreError("the configuration kept changing under this delete; try again")

    async def _commit(self, plan: Plan) -> bool:
        try:
            await self.store.commit(plan)
        except StaleState as exc:
            log.info("config commit lost a race (%s); re-reading", exc)
            self._swap(await self.store.refresh())
            return False
        self._swap(plan.state)
        return True

    def _swap(self, state: ConfigState) -> None:
        if state.version < self.state.version:
            return
        changed = state.version != self.state.version or state is not self.state
        self.key_sets.track(state.rules.resources.values())
        self.state = replace(state, rules=self._with_context(state))
        metrics.CONFIG_VERSION.set(state.version)
        for kind in KINDS:
            metrics.RESOURCES.labels(kind).set(len(state.listing(kind)))
        if changed:
            self.pusher.rules_changed()

    def _with_context(self, state: ConfigState) -> RuleSet:
        vips = self.vips.current if self.vips is not None else None
        return state.rules.with_context(self.key_sets.current, self.settings.outbound_traffic_policy, vips)

    def _context_changed(self) -> None:
        """A JWT key set was fetched or rotated, or service VIPs changed: the snapshots using them change."""
        self.state = replace(self.state, rules=self._with_context(self.state))
        self.pusher.rules_changed()

    async def _follow_store(self) -> None:
        while True:
            try:
                await self.store.watch(self._external_state)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("following the config store failed; retrying")
                await asyncio.sleep(1.0)

    def _external_state(self, state: ConfigState) -> None:
        if state.version > self.state.version:
            log.info("configuration version %d committed by another control plane", state.version)
            self._swap(state)

    # === sidecars ===

    def _service_changed(self, name: str) -> None:
        self.pusher.service_changed(name)

    async def demand(self, record: SidecarRecord, host: str) -> tuple[bool, str]:
        """Add a host the sidecar's app asked for; returns (routed now, snapshot version)."""
        name = demand_name(host) or self._vip_of(host)
        if name is None:
            return False, record.current.version if record.current else ""
        if self.pusher.demand(record, name) or record.current is None:
            await self.pusher.settled(self.settings.first_answer_timeout + 1.0)
        current = record.current
        if current is None:
            return False, ""
        return name not in current.translation.unresolved, current.version

    def _vip_of(self, host: str) -> str | None:
        """A Host naming a service VIP (``10.96.0.5`` or ``10.96.0.5:9080``): the address, demanded as a host."""
        address, _ = split_host_port(host)
        return address if address in self.state.rules.vips else None

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(10.0)
            now = time.monotonic()
            for record in list(self.pusher.sidecars.values()):
                if record.polls == 0 and now - record.last_seen > self.settings.forget_after:
                    log.info("forgetting sidecar %s (not heard from for %.0fs)", record.id, now - record.last_seen)
                    self.pusher.forget(record.id)
            self.watches.want(self.pusher.needed_services())  # stops the watches nobody needs any more
            self.update_gauges()

    def update_gauges(self) -> None:
        now = time.monotonic()
        connected = sum(
            1
            for r in self.pusher.sidecars.values()
            if r.polls > 0 or now - r.last_seen < self.settings.connected_within
        )
        metrics.SIDECARS.labels("connected").set(connected)
        metrics.SIDECARS.labels("disconnected").set(len(self.pusher.sidecars) - connected)
        metrics.WATCHED_SERVICES.set(len(self.watches.watched))

    def share_status(self, share: StatusShare) -> None:
        """Publish this replica's sidecars through ``share`` and show the other replicas' in status."""
        self.share = share
        self.replica = share.replica
        task = share.run(self._local_sidecars, lambda: self.state.version)
        self._tasks.append(asyncio.get_running_loop().create_task(task, name="status-share"))

    def _local_sidecars(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        return [
            {**record.status(now, self.settings.connected_within), "replica": self.replica}
            for record in sorted(self.pusher.sidecars.values(), key=lambda r: r.id)
        ]

    def status(self) -> dict[str, Any]:
        """This replica's view: its own sidecars only."""
        return {
            "config_version": self.state.version,
            "store": self.store.name,
            "replica": self.replica,
            "watched_services": sorted(self.watches.watched),
            "sidecars": self._local_sidecars(),
        }

    async def cluster_status(self) -> dict[str, Any]:
        """``status`` plus every sidecar the other live replicas serve (shared store), and the replicas."""
        out = self.status()
        if self.share is None:
            return out
        try:
            view = await self.share.view()
        except RegistryError as exc:  # the registry is down: say so, still show our own sidecars
            out["shared_status_error"] = f"cannot read the other replicas' status: {exc}"
            return out
        now = time.time()
        replicas = [info.to_json(now, self.replica) for info in view.replicas]
        if not any(r["self"] for r in replicas):
            replicas.append(
                {"id": self.replica, "url": self.share.url, "self": True, "config_version": self.state.version}
            )
        out["replicas"] = sorted(replicas, key=lambda r: str(r["id"]))
        out["sidecars"] = merge_sidecars(out["sidecars"], view.sidecars)
        return out

    # === explain ===

    async def explain(
        self,
        source: str,
        host: str,
        method: str,
        path: str,
        query: str,
        headers: Mapping[str, str],
        namespace: str = "",
    ) -> dict[str, Any]:
        translation, described = await self._translation_for(source, host, namespace)
        catalog = self.watches.catalog
        out = explain_request(translation, catalog, host=host, method=method, path=path, query=query, headers=headers)
        if "destinations" in out:
            out["security"] = security_view(
                self.state,
                translation,
                catalog,
                [d["cluster"] for d in out["destinations"]],
                source=self._identity_of(source, namespace),
                method=method,
                path=path,
                host=host,
                headers=headers,
            )
        return {"config_version": self.state.version, "source": described, **out}

    def _identity_of(self, service: str, namespace: str) -> SpiffeId | None:
        """The SPIFFE ID a sidecar of ``service`` would hold (its registered namespace unless one is given)."""
        if not namespace:
            registered = (r.registration for r in self.pusher.sidecars.values() if r.registration.service == service)
            namespace = min((reg.namespace for reg in registered), default="default")
        try:
            return SpiffeId(self.trust_domain, namespace, service)
        except IdentityError:
            return None

    async def _translation_for(self, source: str, host: str, namespace: str) -> tuple[Translation, dict[str, Any]]:
        """The snapshot the source's sidecar has, when one exists and knows the host; else the one a
        sidecar of that service would get after asking for the host."""
        name = demand_name(host) or host
        records = sorted(
            (r for r in self.pusher.sidecars.values() if r.registration.service == source),
            key=lambda r: (not r.in_sync(), r.id),
        )
        if namespace:
            records = [r for r in records if r.registration.namespace == namespace]
        for record in records:
            current = record.current
            if current is not None and name in record.demanded and name not in current.translation.unresolved:
                return current.translation, {
                    "service": source,
                    "sidecar": record.id,
                    "snapshot_version": current.version,
                    "applied_version": record.applied_version,
                }
        if records:
            reg = records[0].registration
            profile = Profile(
                reg.service, reg.namespace, reg.labels, reg.bootstrap, frozenset({*records[0].demanded, name})
            )
            basis = f"sidecar {records[0].id}'s registration, with {name!r} added as its app would ask for it"
        else:
            bootstrap = parse_snapshot(DEFAULT_BOOTSTRAP, version="bootstrap")
            profile = Profile(source, namespace or "default", (("app", source),), bootstrap, frozenset({name}))
            basis = "no sidecar of this service is registered: computed for a new one (labels app=" + source + ")"
        translation = await self.pusher.translate_for(profile)
        return translation, {"service": source, "sidecar": None, "computed": basis}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


__all__ = ["DEFAULT_BOOTSTRAP", "ControlPlane", "PlaneSettings"]
