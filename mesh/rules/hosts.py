"""What a host written in a rule refers to: a registry service, an external name, or a wildcard (pure).

Istio's reading, adapted to a Consul-style registry:

- a short name (``reviews``) is the service in the rule's namespace, as Istio reads short names;
- ``<svc>.<ns>.svc[.cluster.local]`` names the service in that namespace;
- ``<svc>.service[.<dc>].consul`` is the service in the rule's namespace (Consul has one);
- ``*`` and ``*.example.com`` are wildcards;
- anything else (``api.example.com``, ``reviews.prod``) is a plain external name, which only a
  ``ServiceEntry`` can give endpoints to (Istio does not expand dotted names either).

A registry service's namespace is its instances' ``k8s-namespace`` Meta (default ``default``),
the rule DNS answers by. Every service host has one canonical form,
``<svc>.<ns>.svc.cluster.local``, which is what conflicts are checked on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mesh.model.hosts import DEFAULT_CLUSTER_DOMAIN, service_from_host

HostKind = Literal["service", "external", "wildcard"]


@dataclass(frozen=True, slots=True)
class HostRef:
    """A rule host resolved in a namespace. ``fqdn`` is the canonical name (the pattern for wildcards)."""

    kind: HostKind
    fqdn: str
    service: str = ""
    namespace: str = ""

    def matches(self, other: HostRef) -> bool:
        """Whether this (possibly wildcard) host covers ``other``, a concrete host."""
        if self.kind != "wildcard":
            return self.fqdn == other.fqdn
        if self.fqdn == "*":
            return True
        return other.fqdn.endswith(self.fqdn[1:]) and len(other.fqdn) > len(self.fqdn) - 1


def service_fqdn(service: str, namespace: str) -> str:
    return f"{service}.{namespace}.svc.{DEFAULT_CLUSTER_DOMAIN}"


def resolve_host(host: str, namespace: str) -> HostRef:
    """Read a rule's host (already lower-cased and validated) in the rule's ``namespace``."""
    if host == "*" or host.startswith("*."):
        return HostRef("wildcard", host)
    ref = service_from_host(host)
    if ref is not None and not (ref.form == "kubernetes" and host.count(".") == 1):
        service_namespace = ref.namespace if ref.form == "kubernetes" and ref.namespace else namespace
        return HostRef("service", service_fqdn(ref.service, service_namespace), ref.service, service_namespace)
    return HostRef("external", host)


def resolve_request_host(host: str, namespace: str) -> HostRef | None:
    """What a request's Host names for a sidecar in ``namespace`` (``None`` for IP literals and
    malformed names). Unlike rule hosts, ``<svc>.<ns>`` is read as Kubernetes DNS reads it from a pod."""
    ref = service_from_host(host)
    if ref is not None:
        service_namespace = ref.namespace if ref.form == "kubernetes" and ref.namespace else namespace
        return HostRef("service", service_fqdn(ref.service, service_namespace), ref.service, service_namespace)
    name = host.strip().lower().rstrip(".")
    name = name.rsplit(":", 1)[0] if name.count(":") == 1 else name
    if not name or name.startswith("[") or name.replace(".", "").isdigit():
        return None
    return HostRef("external", name)


__all__ = ["HostKind", "HostRef", "resolve_host", "resolve_request_host", "service_fqdn"]
