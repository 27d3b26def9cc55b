"""Host header handling: normalisation and the registry service a name refers to (pure).

Recognised service names (case-insensitive, ``:port`` allowed on every form):

- ``<service>`` — a single label, as a local app would write ``http://web/``;
- ``<service>.service.consul`` and ``<service>.service.<dc>.consul`` (Consul DNS);
- ``<svc>.<ns>``, ``<svc>.<ns>.svc`` and ``<svc>.<ns>.svc.cluster.local`` (Kubernetes; the short
  forms are what a pod's DNS search path resolves, and what Istio accepts as hosts).

Labels must be DNS-ish (letters, digits, ``-`` and ``_``, at most 63 characters), so arbitrary
Host headers never turn into registry queries. IP literals are never services.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

DEFAULT_CLUSTER_DOMAIN = "cluster.local"
DEFAULT_CONSUL_DOMAIN = "consul"
DEFAULT_NAMESPACE = "default"

_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_IPV4 = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")

NameForm = Literal["short", "consul", "kubernetes"]


@dataclass(frozen=True, slots=True)
class ServiceRef:
    """A service named by a Host. ``namespace``/``datacenter`` are set only when the name carried them."""

    service: str
    form: NameForm
    namespace: str | None = None
    datacenter: str | None = None
    port: int | None = None


def split_host_port(host: str) -> tuple[str, int | None]:
    """``"Web:8080"`` → ``("web", 8080)``; ``"[::1]:80"`` → ``("[::1]", 80)``; no port → ``None``.

    The host part is lower-cased with one trailing dot removed. A malformed port (not 1-65535
    digits) is kept as part of the host, so such a Host matches nothing by accident.
    """
    text = host.strip().lower()
    if text.startswith("["):
        end = text.find("]")
        if end > 0 and text[end + 1 : end + 2] == ":":
            port = _port(text[end + 2 :])
            if port is not None:
                return text[: end + 1], port
        return text, None
    colon = text.rfind(":")
    if colon >= 0 and text.count(":") == 1:
        port = _port(text[colon + 1 :])
        if port is not None:
            return _strip_dot(text[:colon]), port
    return _strip_dot(text), None


def normalize_host(host: str) -> str:
    """Lower-case, trailing dot removed, port kept when there is one: ``"Web.:80"`` → ``"web:80"``."""
    name, port = split_host_port(host)
    return name if port is None else f"{name}:{port}"


def service_from_host(
    host: str,
    cluster_domain: str = DEFAULT_CLUSTER_DOMAIN,
    consul_domain: str = DEFAULT_CONSUL_DOMAIN,
) -> ServiceRef | None:
    """The registry service a Host names, or ``None`` when it names none (see the module doc)."""
    name, port = split_host_port(host)
    if not name or name.startswith("[") or _IPV4.fullmatch(name):
        return None
    labels = name.split(".")
    if not all(_LABEL.fullmatch(label) for label in labels):
        return None
    consul = consul_domain.strip(".").lower().split(".")
    cluster = cluster_domain.strip(".").lower().split(".")
    if len(labels) == 1:
        return ServiceRef(labels[0], "short", port=port)
    if labels[-len(consul) :] == consul:
        inner = labels[: -len(consul)]
        if len(inner) == 2 and inner[1] == "service":
            return ServiceRef(inner[0], "consul", port=port)
        if len(inner) == 3 and inner[1] == "service":
            return ServiceRef(inner[0], "consul", datacenter=inner[2], port=port)
        return None
    if labels[-len(cluster) :] == cluster:
        inner = labels[: -len(cluster)]
        if len(inner) == 3 and inner[2] == "svc":
            return ServiceRef(inner[0], "kubernetes", namespace=inner[1], port=port)
        return None
    if len(labels) == 3 and labels[2] == "svc":
        return ServiceRef(labels[0], "kubernetes", namespace=labels[1], port=port)
    if len(labels) == 2:
        return ServiceRef(labels[0], "kubernetes", namespace=labels[1], port=port)
    return None


def service_domains(
    service: str,
    namespace: str = DEFAULT_NAMESPACE,
    datacenter: str | None = None,
    cluster_domain: str = DEFAULT_CLUSTER_DOMAIN,
    consul_domain: str = DEFAULT_CONSUL_DOMAIN,
) -> tuple[str, ...]:
    """Every name ``service_from_host`` maps to ``service``, as virtual-host domains (lower-case).

    With a ``datacenter`` the ``<service>.service.<dc>.<consul>`` form is included. Ports need no
    entries: a domain without a port matches a Host with any port.
    """
    svc = service.lower()
    ns = namespace.lower()
    consul = consul_domain.strip(".").lower()
    cluster = cluster_domain.strip(".").lower()
    domains = [svc, f"{svc}.service.{consul}"]
    if datacenter:
        domains.append(f"{svc}.service.{datacenter.lower()}.{consul}")
    domains += [f"{svc}.{ns}", f"{svc}.{ns}.svc", f"{svc}.{ns}.svc.{cluster}"]
    return tuple(domains)


def endpoint_key(host: str, port: int) -> str:
    """The usual endpoint key ``host:port``, with an IPv6 host in brackets (``[::1]:80``)."""
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def _port(text: str) -> int | None:
    if not (text.isascii() and text.isdigit()) or len(text) > 5:
        return None
    port = int(text)
    return port if 0 < port < 65536 else None


def _strip_dot(name: str) -> str:
    return name[:-1] if name.endswith(".") else name


__all__ = [
    "DEFAULT_CLUSTER_DOMAIN",
    "DEFAULT_CONSUL_DOMAIN",
    "DEFAULT_NAMESPACE",
    "NameForm",
    "ServiceRef",
    "endpoint_key",
    "normalize_host",
    "service_domains",
    "service_from_host",
    "split_host_port",
]
