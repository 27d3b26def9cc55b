"""How the registrar marks what it owns in the registry, and reads that back.

Every service it registers carries Meta ``registrar-host`` (the host name that is part of
the service ID), ``registrar-container`` (the full container ID) and ``registrar-digest``
(a hash of the whole registration). After a restart the registrar finds its services by
these keys and adopts them: same digest means nothing to write. Check IDs of the checks it
adds are fixed strings derived from the service ID. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from discovery.client_models import AgentService, HealthCheck

HOST_KEY: Final = "registrar-host"
CONTAINER_KEY: Final = "registrar-container"
DIGEST_KEY: Final = "registrar-digest"
OWNERSHIP_KEYS: Final = frozenset({HOST_KEY, CONTAINER_KEY, DIGEST_KEY})


def health_check_id(service_id: str) -> str:
    """The TTL check that mirrors the container's Docker HEALTHCHECK status."""
    return f"service:{service_id}:docker-health"


def heartbeat_check_id(service_id: str) -> str:
    """The TTL check the registrar passes every ``--ttl-refresh`` (with ``--ttl``)."""
    return f"service:{service_id}:registrar-ttl"


def digest(body: Mapping[str, Any]) -> str:
    """A short stable hash of a registration body (keys sorted, so order does not matter)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class OwnedService:
    """A service this registrar registered, as the registry (or our write-through cache) has it."""

    service_id: str
    container_id: str
    digest: str
    health: str | None = None  # status of its docker-health check; None when it has none


def owned_services(
    services: Mapping[str, AgentService], checks: Mapping[str, HealthCheck], hostname: str
) -> dict[str, dict[str, OwnedService]]:
    """Our services in an agent listing, grouped by container ID."""
    owned: dict[str, dict[str, OwnedService]] = {}
    for service in services.values():
        meta = service.meta
        if meta.get(HOST_KEY) != hostname or not meta.get(CONTAINER_KEY):
            continue
        health = checks.get(health_check_id(service.id))
        entry = OwnedService(
            service_id=service.id,
            container_id=meta[CONTAINER_KEY],
            digest=meta.get(DIGEST_KEY, ""),
            health=health.status if health is not None and health.service_id == service.id else None,
        )
        owned.setdefault(entry.container_id, {})[service.id] = entry
    return owned


__all__ = [
    "CONTAINER_KEY",
    "DIGEST_KEY",
    "HOST_KEY",
    "OWNERSHIP_KEYS",
    "OwnedService",
    "digest",
    "health_check_id",
    "heartbeat_check_id",
    "owned_services",
]
