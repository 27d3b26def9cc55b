"""Request mirroring (Envoy ``request_mirror_policies``, Istio ``mirror``), pure part: which requests
are copied where, what the copy looks like, and how many copies may be in flight.

The contract the proxy follows for a forwarded request of a route with ``mirrors``:

1. ``mirror_targets(route.mirrors, rng)``: the shadow clusters this request is copied to
   (each rolls its own ``percentage``).
2. Per target, ``MirrorLimiter.try_acquire(cluster)``: False means drop the copy (counted as
   ``dropped``): at most ``MAX_MIRRORS_IN_FLIGHT`` copies per cluster are in flight, so a slow
   shadow can never build up memory or tasks.
3. The copy: same method and target (after ``prefix_rewrite``), the client's end-to-end headers,
   ``Host`` with ``-shadow`` appended to its name (``shadow_host``: ``api:8080`` ->
   ``api-shadow:8080``, as Envoy), and the body, which the proxy collects as it streams it to
   the primary; a body longer than ``MIRROR_BODY_LIMIT`` cancels the copy (``dropped``).
   ``shadow_request_bytes`` frames it (``Content-Length``, ``Connection: close``).
4. ``MirrorSender.send`` (``sidecar.resilience.mirror_sender``) fires it at an endpoint the shadow
   cluster's balancer picked, reads and drops the answer, and calls ``release``; the primary
   request never waits on any of this.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from mesh.model.policies import MirrorPolicy
from sidecar.resilience.fault import rolls

MIRROR_BODY_LIMIT = 64 * 1024
MAX_MIRRORS_IN_FLIGHT = 64
SHADOW_SUFFIX = "-shadow"

# Hop-by-hop and framing headers: the copy has its own framing and connection.
_NOT_COPIED = frozenset(
    {
        "host",
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "content-length",
        "expect",
    }
)


def mirror_targets(mirrors: tuple[MirrorPolicy, ...], rng: random.Random) -> tuple[str, ...]:
    """Shadow clusters for this request (each mirror rolls its percentage independently)."""
    if not mirrors:
        return ()
    return tuple(m.cluster for m in mirrors if rolls(m.percentage, rng))


def shadow_host(host: str) -> str:
    """``Host`` of a mirrored copy: ``-shadow`` after the name, before any port (Envoy)."""
    if host.startswith("["):
        end = host.find("]")
        if end > 0:
            return host[: end + 1] + SHADOW_SUFFIX + host[end + 1 :]
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit() and name:
        return f"{name}{SHADOW_SUFFIX}:{port}"
    return host + SHADOW_SUFFIX


def shadow_request_bytes(
    method: str, target: str, host: str, headers: Iterable[tuple[str, str]], body: bytes = b""
) -> bytes:
    """The copy as HTTP/1.1 bytes: end-to-end headers kept, ``Host`` shadowed, fresh framing."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {shadow_host(host)}"]
    for name, value in headers:
        if name.lower() not in _NOT_COPIED:
            lines.append(f"{name}: {value}")
    if body or method not in ("GET", "HEAD", "DELETE", "OPTIONS", "TRACE"):
        lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class MirrorLimiter:
    """Copies in flight per shadow cluster, capped; counts sent, dropped and failed copies."""

    __slots__ = ("dropped", "failed", "in_flight", "limit", "sent")

    def __init__(self, limit: int = MAX_MIRRORS_IN_FLIGHT) -> None:
        self.limit = limit
        self.in_flight: dict[str, int] = {}
        self.sent: dict[str, int] = {}
        self.dropped: dict[str, int] = {}
        self.failed: dict[str, int] = {}

    def try_acquire(self, cluster: str) -> bool:
        count = self.in_flight.get(cluster, 0)
        if count >= self.limit:
            self.drop(cluster)
            return False
        self.in_flight[cluster] = count + 1
        return True

    def release(self, cluster: str, ok: bool) -> None:
        count = self.in_flight.get(cluster, 0)
        if count > 0:
            self.in_flight[cluster] = count - 1
        counter = self.sent if ok else self.failed
        counter[cluster] = counter.get(cluster, 0) + 1

    def drop(self, cluster: str) -> None:
        """A copy was given up before sending (limit reached, body too long, no endpoint)."""
        self.dropped[cluster] = self.dropped.get(cluster, 0) + 1


__all__ = [
    "MAX_MIRRORS_IN_FLIGHT",
    "MIRROR_BODY_LIMIT",
    "SHADOW_SUFFIX",
    "MirrorLimiter",
    "mirror_targets",
    "shadow_host",
    "shadow_request_bytes",
]
