"""Registry instances as the control plane sees them, and subset selection over them (pure).

An instance's **labels** (what DestinationRule subsets select on) are its ``Meta`` entries plus
its tags of the form ``key|value`` (the convention of Istio's own Consul adapter) or
``key=value``; Meta wins when both name a key. Its **namespace** is Meta ``k8s-namespace``
(default ``default``), as in cluster DNS. Health is Consul's: the worst of the instance's and
its node's checks; only ``passing`` instances become endpoints, and every other instance is kept
with its failing checks so ``explain`` can say why it was left out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from discovery.client_models import HealthServiceEntry
from lb import Endpoint
from mesh.model.hosts import DEFAULT_NAMESPACE, endpoint_key

NAMESPACE_META = "k8s-namespace"

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class FailingCheck:
    check_id: str
    name: str
    status: str
    output: str


@dataclass(frozen=True, slots=True)
class Instance:
    """One registered instance of a service, reduced to what routing and explain need."""

    service_id: str
    node: str
    address: str
    port: int
    weight: int
    status: str  # passing, warning or critical (Consul's aggregate)
    namespace: str
    labels: Labels
    failing: tuple[FailingCheck, ...] = ()

    @property
    def key(self) -> str:
        return endpoint_key(self.address, self.port)

    @property
    def passing(self) -> bool:
        return self.status == "passing"

    def endpoint(self) -> Endpoint:
        metadata = (("consul.node", self.node), ("consul.service_id", self.service_id), *self.labels)
        return Endpoint(self.key, self.address, self.port, self.weight, True, tuple(sorted(set(metadata))))

    def describe(self) -> str:
        return f"{self.service_id} on {self.node} ({self.address}:{self.port})"


def instance_labels(tags: Iterable[str], meta: Iterable[tuple[str, str]]) -> Labels:
    labels: dict[str, str] = {}
    for tag in tags:
        for separator in ("|", "="):
            key, sep, value = tag.partition(separator)
            if sep and key:
                labels.setdefault(key, value)
                break
    labels.update(dict(meta))
    return tuple(sorted(labels.items()))


def instances_from_entries(entries: Iterable[HealthServiceEntry]) -> tuple[Instance, ...]:
    """The instances of one ``/v1/health/service`` answer, sorted (node, service ID)."""
    out: list[Instance] = []
    for entry in sorted(entries, key=lambda e: (e.node.name, e.service.id)):
        meta = entry.service.meta
        failing = tuple(
            FailingCheck(check.check_id, check.name, check.status, check.output)
            for check in entry.checks
            if check.status != "passing"
        )
        out.append(
            Instance(
                service_id=entry.service.id,
                node=entry.node.name,
                address=entry.effective_address,
                port=entry.service.port,
                weight=max(1, entry.service.weights.passing),
                status=entry.status,
                namespace=meta.get(NAMESPACE_META) or DEFAULT_NAMESPACE,
                labels=instance_labels(entry.service.tags, meta.items()),
                failing=failing,
            )
        )
    return tuple(out)


def missing_labels(selector: Labels, labels: Labels) -> list[str]:
    """The ``key=value`` pairs of ``selector`` the instance's ``labels`` lack (empty: selected)."""
    have = dict(labels)
    return [f"{key}={value}" for key, value in selector if have.get(key) != value]


def exclusion_reason(instance: Instance, namespace: str, selector: Labels, port: int | None) -> str | None:
    """Why ``instance`` is not an endpoint of (namespace, subset selector, port); ``None`` if it is."""
    if instance.namespace != namespace:
        return f"in namespace {instance.namespace!r}, not {namespace!r}"
    if port is not None and instance.port != port:
        return f"registered on port {instance.port}, the route asks for port {port}"
    missing = missing_labels(selector, instance.labels)
    if missing:
        return f"not in the subset: lacks {', '.join(missing)}"
    if not instance.passing:
        checks = "; ".join(
            f"{c.name or c.check_id} is {c.status}" + (f": {c.output.strip()}" if c.output.strip() else "")
            for c in instance.failing
        )
        return f"unhealthy ({instance.status}{': ' + checks if checks else ''})"
    if not instance.address or not 0 < instance.port < 65536:
        return "registered without a usable address and port"
    return None


__all__ = [
    "NAMESPACE_META",
    "FailingCheck",
    "Instance",
    "Labels",
    "exclusion_reason",
    "instance_labels",
    "instances_from_entries",
    "missing_labels",
]
