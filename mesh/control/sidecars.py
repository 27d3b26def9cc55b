"""Sidecars known to this control plane: their registration, what they were sent, what they applied.

A sidecar registers with ``PUT /v1/mesh/sidecars/{id}``: its service, namespace, labels (for
``sourceLabels`` matches and DestinationRule workload selectors), its bootstrap snapshot, and the
hosts its app has asked for so far (so a restarted control plane learns them back). A gateway
proxy (``mesh gateway``) adds ``gateway: {bind: <address>}``: its listeners then come from the
``Gateway`` resources its labels select (``mesh.control.translate_gateway``). The record
then follows its long polls, ACKs and NACKs for ``GET /v1/mesh/status``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import time
from dataclasses import dataclass
from typing import Any

from discovery.runtime.addresses import is_loopback
from mesh.control.translate import Profile, Translation, snapshot_digest
from mesh.model.hosts import DEFAULT_NAMESPACE, split_host_port
from mesh.model.parse import ConfigError, parse_snapshot
from mesh.model.reader import show
from mesh.model.snapshot import Snapshot
from mesh.rules.fields import Reader, check_dns_label

MAX_DEMANDED = 1000
_SIDECAR_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@~-]{0,252}")
_HOST = re.compile(r"[a-z0-9_]([a-z0-9_.-]{0,251}[a-z0-9_])?")

ProfileKey = tuple[str, str, tuple[tuple[str, str], ...], str, frozenset[str], str]


def check_sidecar_id(sidecar_id: str) -> str:
    if not _SIDECAR_ID.fullmatch(sidecar_id):
        raise ConfigError(
            "id", f"invalid sidecar id {sidecar_id!r} (letters, digits and ._:@~-, at most 253, starting alphanumeric)"
        )
    return sidecar_id


def demand_name(host: str) -> str | None:
    """A request's Host reduced to the name part (lower-case, no port, no trailing dot), or None if
    it cannot name anything (an IP literal or junk)."""
    name, _ = split_host_port(host)
    if not name or name.startswith("[") or not _HOST.fullmatch(name) or name.replace(".", "").isdigit():
        return None
    return name


def _address(host: str) -> str | None:
    name, _ = split_host_port(host)
    try:
        return str(ipaddress.ip_address(name.strip("[]")))
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Registration:
    sidecar_id: str
    service: str
    namespace: str
    labels: tuple[tuple[str, str], ...]
    bootstrap: Snapshot
    bootstrap_digest: str
    demanded: tuple[str, ...] = ()
    admin: str = ""  # the sidecar's admin address "host:port" (its /metrics, for the topology); "" when not given
    gateway_bind: str = ""  # a gateway proxy's listening address; "" for a sidecar


def check_admin_address(value: str) -> str:
    """``host:port`` with a port 1-65535 (``[v6]:port`` for IPv6); ``ConfigError`` names the ``admin`` field."""
    host, sep, port = value.rpartition(":")
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if (
        not sep
        or not bare
        or not (port.isascii() and port.isdigit() and 0 < int(port) <= 65535)
        or any(c.isspace() or c in "/?#@" for c in host)
        or (":" in bare and bare == host)  # an IPv6 literal needs brackets
    ):
        raise ConfigError("admin", f"must be the sidecar's admin address host:port (port 1-65535), got {show(value)}")
    return value


def scrapable_admin(admin: str, peer: str | None) -> str:
    """The admin address the control plane may scrape, "" when it cannot be this sidecar's.

    A loopback admin address (the default, ``127.0.0.1:15000``) names the sidecar's own machine; when
    the sidecar registered from another machine (a non-loopback peer), that address here would reach
    whatever listens on this machine's loopback and credit its numbers to the remote sidecar.
    """
    if not admin or peer is None:
        return admin
    host, _ = split_host_port(admin)
    return "" if is_loopback(host) and not is_loopback(peer) else admin


def parse_registration(sidecar_id: str, data: object) -> Registration:
    """Validate a registration body; ``ConfigError`` names the field (``bootstrap.listeners[0].port``)."""
    check_sidecar_id(sidecar_id)
    body = Reader(data, "")
    service = body.text("service", required=True) or ""
    if any(c.isspace() for c in service):
        raise ConfigError("service", f"must be a service name without spaces, got {service!r}")
    namespace = check_dns_label(body.text("namespace") or DEFAULT_NAMESPACE, "namespace", "namespace")
    labels = body.labels("labels")
    raw_bootstrap = body.take("bootstrap", {})
    try:
        bootstrap = parse_snapshot(raw_bootstrap, version="bootstrap")
    except ConfigError as exc:
        raise ConfigError(f"bootstrap.{exc.path}" if exc.path else "bootstrap", exc.message) from exc
    admin = body.text("admin") or ""
    if admin:
        check_admin_address(admin)
    gateway = body.optional_child("gateway")
    gateway_bind = ""
    if gateway is not None:
        gateway_bind = gateway.text("bind", required=True) or ""
        if any(c.isspace() or c in "/[]" for c in gateway_bind):
            raise ConfigError("gateway.bind", f"must be an IP address or host name to listen on, got {gateway_bind!r}")
        gateway.finish()
    demanded: list[str] = []
    for i, host in enumerate(body.strings("demanded")):
        name = demand_name(host) or _address(host)  # an address: a service VIP the app called
        if name is None:
            raise ConfigError(f"demanded[{i}]", f"not a host name: {show(host)}")
        if name not in demanded:
            demanded.append(name)
    body.finish()
    digest, _ = snapshot_digest(bootstrap)
    return Registration(
        sidecar_id, service, namespace, labels, bootstrap, digest, tuple(demanded[-MAX_DEMANDED:]), admin, gateway_bind
    )


@dataclass(frozen=True, slots=True)
class Rendered:
    """A computed snapshot, versioned and serialized once for every sidecar that gets it."""

    version: str
    digest: str
    translation: Translation
    body: bytes  # the sync response body

    @property
    def snapshot(self) -> Snapshot:
        return self.translation.snapshot


def version_digest(version: str) -> str:
    """The content part of a snapshot version ``<config version>.<digest>`` (all of it otherwise)."""
    return version.rpartition(".")[2]


class SidecarRecord:
    """One sidecar's state on this control plane (owned by the event loop; no locks)."""

    def __init__(self, registration: Registration, clock: float) -> None:
        self.registration = registration
        self.demanded: dict[str, None] = dict.fromkeys(registration.demanded)  # insertion order: oldest first
        self.current: Rendered | None = None
        self.config_version = 0  # the config version the current snapshot was computed at
        self.sent_version = ""
        self.applied_version = ""
        self.last_ack: tuple[str, float] | None = None
        self.last_nack: tuple[str, float, str] | None = None
        self.polls = 0
        self.last_seen = clock
        self.last_seen_at = time.time()
        self.registered_at = time.time()
        self.wake = asyncio.Event()
        self.secret_digest = b""  # SHA-256 of the secret handed out at registration (mesh.control.tokens)

    @property
    def id(self) -> str:
        return self.registration.sidecar_id

    def profile_key(self) -> ProfileKey:
        reg = self.registration
        return (
            reg.service,
            reg.namespace,
            reg.labels,
            reg.bootstrap_digest,
            frozenset(self.demanded),
            reg.gateway_bind,
        )

    def profile(self) -> Profile:
        reg = self.registration
        return Profile(
            reg.service, reg.namespace, reg.labels, reg.bootstrap, frozenset(self.demanded), reg.gateway_bind
        )

    def add_demand(self, name: str) -> bool:
        """Remember a host the app asked for; True if it is new."""
        if name in self.demanded:
            return False
        self.demanded[name] = None
        while len(self.demanded) > MAX_DEMANDED:
            del self.demanded[next(iter(self.demanded))]
        return True

    def seen(self, clock: float) -> None:
        self.last_seen = clock
        self.last_seen_at = time.time()

    def in_sync(self) -> bool:
        current = self.current
        return current is not None and version_digest(self.applied_version) == current.digest

    def status(self, clock: float, connected_within: float) -> dict[str, Any]:
        current = self.current
        reg = self.registration
        return {
            "id": self.id,
            "service": reg.service,
            "namespace": reg.namespace,
            "labels": dict(reg.labels),
            "version": current.version if current is not None else "",
            "config_version": self.config_version,
            "applied_version": self.applied_version,
            "in_sync": self.in_sync(),
            "last_ack": None if self.last_ack is None else {"version": self.last_ack[0], "at": _iso(self.last_ack[1])},
            "last_nack": None
            if self.last_nack is None
            else {"version": self.last_nack[0], "at": _iso(self.last_nack[1]), "error": self.last_nack[2]},
            "connected": self.polls > 0 or clock - self.last_seen < connected_within,
            "last_seen": _iso(self.last_seen_at),
            "hosts": sorted(self.demanded),
            "admin": reg.admin,
        }


def _iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(timestamp)) + f".{int(timestamp % 1 * 1000):03d}Z"


__all__ = [
    "MAX_DEMANDED",
    "ProfileKey",
    "Registration",
    "Rendered",
    "SidecarRecord",
    "check_admin_address",
    "check_sidecar_id",
    "demand_name",
    "parse_registration",
    "scrapable_admin",
    "version_digest",
]
