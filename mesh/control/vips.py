"""Service virtual IPs (kube-proxy's ClusterIPs): one stable address per service, kept in the registry's KV.

With ``mesh control --service-vip-range CIDR`` the control plane gives every service in the
registry that is not headless (no instance with Meta ``k8s-headless: "true"``) and names no
address of its own (Meta ``k8s-cluster-ip``) a virtual IP from the range, per namespace (the
instances' ``k8s-namespace`` Meta, default ``default``). The assignment lives in the registry's
KV, which every part can read and which survives restarts of any of them:

- ``mesh/vips/<namespace>/<service>`` → the address (what cluster DNS reads: it answers the VIP
  for ``<service>.<namespace>.svc.cluster.local``);
- ``mesh/vips-by-ip/<address>`` → ``<namespace>/<service>``, claimed first with check-and-set, so
  two control-plane replicas can never hand one address to two services.

Addresses are the lowest free ones of the range (the network and broadcast addresses excepted)
and are never taken back while their key exists: a service that goes away keeps its address, so
a name never changes its VIP (delete the two keys to free one). The control plane's own map
(``current``: address → (namespace, service)) follows the KV, so the sidecars it configures route
requests whose Host is a VIP to that service.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType

from discovery.client import RegistryClient
from discovery.client_models import RegistryError

log = logging.getLogger("mesh.control.vips")

PREFIX = "mesh/vips/"
BY_IP = "mesh/vips-by-ip/"
META_HEADLESS = "k8s-headless"
META_CLUSTER_IP = "k8s-cluster-ip"
META_NAMESPACE = "k8s-namespace"

VipMap = Mapping[str, tuple[str, str]]  # address → (namespace, service)


class VipRangeError(ValueError):
    """The range is not a usable CIDR (the message says why)."""


def parse_range(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        network = ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        raise VipRangeError(f"{text!r} is not a network in CIDR notation ({exc})") from None
    if network.num_addresses < 4:
        raise VipRangeError(f"{text!r} has too few addresses for service VIPs")
    return network


def next_free(network: ipaddress.IPv4Network | ipaddress.IPv6Network, taken: Iterable[str]) -> str | None:
    """The lowest address of ``network`` not in ``taken`` (network and broadcast addresses excepted)."""
    used = set(taken)
    for address in network.hosts():
        text = str(address)
        if text not in used:
            return text
    return None


def wanted_services(instances: Mapping[str, Iterable[Mapping[str, str]]]) -> set[tuple[str, str]]:
    """(namespace, service) pairs that should have a VIP, from each service's instances' Meta."""
    out: set[tuple[str, str]] = set()
    for service, metas in instances.items():
        metas = list(metas)
        if any(meta.get(META_HEADLESS, "").lower() == "true" or meta.get(META_CLUSTER_IP) for meta in metas):
            continue
        for meta in metas:
            out.add((meta.get(META_NAMESPACE) or "default", service))
    return out


class ServiceVips:
    """Allocates and follows VIPs for the control plane (``on_change`` when the address map changes)."""

    def __init__(
        self,
        client: RegistryClient,
        network: ipaddress.IPv4Network | ipaddress.IPv6Network,
        on_change: Callable[[], None],
        *,
        wait: float | None = None,
    ) -> None:
        self.client = client
        self.network = network
        self._on_change = on_change
        self._wait = wait
        self.current: VipMap = MappingProxyType({})
        self._tasks: list[asyncio.Task[None]] = []
        self.errors = 0

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._follow_assignments(), name="vips-follow"),
            loop.create_task(self._allocate_loop(), name="vips-allocate"),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    # === following the KV ===

    async def _follow_assignments(self) -> None:
        index = 0
        while True:
            try:
                result = await self.client.kv_list(PREFIX, index=index or None, wait=self._wait)
            except RegistryError as exc:
                self.errors += 1
                log.warning("service VIPs: reading the KV failed", extra={"error": f"{exc}"})
                await asyncio.sleep(1.0)
                continue
            index = result.index
            latest: dict[str, tuple[str, str]] = {}
            for pair in result.value or ():
                parts = pair.key[len(PREFIX) :].split("/")
                if len(parts) == 2 and pair.value:
                    latest[pair.value.decode(errors="replace").strip()] = (parts[0], parts[1])
            if latest != dict(self.current):
                self.current = MappingProxyType(latest)
                self._on_change()

    # === allocating ===

    async def _allocate_loop(self) -> None:
        index = 0
        while True:
            try:
                result = await self.client.catalog_services(index=index or None, wait=self._wait)
                index = result.index
                await self.allocate(sorted(result.value))
            except RegistryError as exc:
                self.errors += 1
                log.warning("service VIPs: allocation failed", extra={"error": f"{exc}"})
                await asyncio.sleep(1.0)

    async def allocate(self, services: Iterable[str]) -> None:
        """Give every service that should have a VIP one (existing assignments stay)."""
        metas: dict[str, list[Mapping[str, str]]] = {}
        named = {service for _, service in self.current.values()}
        for name in services:
            if name == "consul" or name in named:
                continue  # the registry's own service has no VIP, as kube-dns gives the API server its own
            entries = (await self.client.catalog_service(name)).value
            metas[name] = [entry.service_meta for entry in entries]
        assigned = {(ns, svc) for ns, svc in self.current.values()}
        for namespace, service in sorted(wanted_services(metas) - assigned):
            await self._assign(namespace, service)

    async def _assign(self, namespace: str, service: str) -> None:
        key = f"{PREFIX}{namespace}/{service}"
        if (await self.client.kv_get(key)).value is not None:
            return  # another replica (or an earlier run) already did
        taken = {pair.key[len(BY_IP) :] for pair in (await self.client.kv_list(BY_IP)).value or ()}
        while True:
            address = next_free(self.network, taken)
            if address is None:
                log.error(
                    "service VIPs: the range is exhausted", extra={"range": str(self.network), "service": service}
                )
                return
            if await self.client.kv_put(f"{BY_IP}{address}", f"{namespace}/{service}", cas=0):
                break
            taken.add(address)  # claimed by another replica meanwhile
        if not await self.client.kv_put(key, address, cas=0):
            with contextlib.suppress(RegistryError):
                await self.client.kv_delete(f"{BY_IP}{address}")  # lost the race for the service: give it back
            return
        log.info("service VIP assigned", extra={"service": f"{namespace}/{service}", "address": address})


__all__ = ["BY_IP", "PREFIX", "ServiceVips", "VipMap", "VipRangeError", "next_free", "parse_range", "wanted_services"]
