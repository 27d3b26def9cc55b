"""The one interface every config source implements, like Envoy's xDS subscriptions.

A source produces whole, validated ``Snapshot`` values and offers each to ``apply`` — the
sidecar's function that builds what requests need and swaps it in. ``apply`` answers with an
``ApplyResult``: accepted (ACK) or rejected with a reason (NACK). On a NACK the sidecar keeps
serving its previous snapshot; the source logs the reason, counts it, and keeps going (it offers
the next change when there is one). A source never stops because of a bad config.

    source = StaticFileSource(Path("sidecar.yaml"))   # or RegistrySource(settings)
    await source.run(apply)                           # runs until cancelled

Sources that learn about services lazily (the registry source) also implement ``OnDemand``: the
proxy calls ``await source.demand(host)`` for a Host its snapshot does not know, and retries the
route if it returns True (the new snapshot has been applied by then).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from mesh.model.snapshot import Snapshot


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """What ``apply`` made of a snapshot: ``error`` is ``None`` when it was applied (ACK)."""

    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def rejected(cls, error: str) -> ApplyResult:
        """A NACK; ``error`` says why, for logs and the control plane's status."""
        return cls(error or "rejected")


APPLIED = ApplyResult()
"""The ACK: the snapshot is now the one requests read."""

Apply = Callable[[Snapshot], ApplyResult]


@dataclass(slots=True)
class SourceStats:
    """Envoy's update_attempt / update_success / update_rejected, plus the latest of each."""

    attempts: int = 0
    accepted: int = 0
    rejected: int = 0
    version: str = ""  # the last accepted version
    rejected_version: str = ""
    last_error: str = ""  # the last rejection's reason, kept after later successes


class ConfigSource(Protocol):
    """A producer of snapshots. ``name`` labels logs and metrics (``file``, ``registry``)."""

    name: str
    stats: SourceStats

    async def run(self, apply: Apply) -> None:
        """Offer every new snapshot to ``apply`` until cancelled; never raise for bad config."""
        ...


@runtime_checkable
class OnDemand(Protocol):
    """A source that can add what a request names on first use (see the module doc)."""

    async def demand(self, host: str) -> bool:
        """Make ``host`` known if it can be; True when the applied snapshot now routes it."""
        ...


def offer(apply: Apply, snapshot: Snapshot, stats: SourceStats, log: logging.Logger) -> bool:
    """Offer ``snapshot`` to ``apply``, count and log the outcome; True on ACK.

    An exception from ``apply`` counts as a NACK with the exception as the reason, so a bug in
    one snapshot's build cannot stop the source.
    """
    stats.attempts += 1
    try:
        result = apply(snapshot)
    except Exception as exc:  # the sidecar's build failed: same as a rejection
        log.exception("config %s: apply raised", snapshot.version)
        result = ApplyResult.rejected(f"{type(exc).__name__}: {exc}")
    if result.ok:
        stats.accepted += 1
        stats.version = snapshot.version
        log.info("config %s applied", snapshot.version, extra={"config_version": snapshot.version})
        return True
    reject(stats, log, snapshot.version, result.error or "rejected")
    return False


def reject(stats: SourceStats, log: logging.Logger, version: str, error: str) -> None:
    """Count and log a NACK (from ``apply`` or from the source's own validation)."""
    stats.rejected += 1
    stats.rejected_version = version
    stats.last_error = error
    log.error(
        "config %s rejected, keeping %s: %s",
        version or "(unversioned)",
        stats.version or "no config",
        error,
        extra={"config_version": version, "error": error},
    )


__all__ = ["APPLIED", "Apply", "ApplyResult", "ConfigSource", "OnDemand", "SourceStats", "offer", "reject"]
