"""Inbound mTLS and authorization at the listener: protocols that wrap the HTTP and TCP ones.

- ``TlsSniffer`` takes an accepted connection when the port's mode is STRICT or PERMISSIVE. On
  the first bytes it decides: a TLS handshake record (``0x16``) → the connection is handed to a
  server-side TLS protocol (uvloop's own ``SSLProtocol`` on uvloop, asyncio's otherwise) with the
  current server context, and the first bytes are fed to it; plaintext → refused (STRICT: the
  connection is closed) or handed to the plaintext protocol with the same ``bytes`` object
  (PERMISSIVE: no copy). The context is read at that moment, so a renewal applies to new
  connections only.
- ``GuardedDownstream`` / ``GuardedTcpDownstream`` read the peer's SPIFFE ID once per connection
  (after the handshake OpenSSL has verified the chain against the trust bundle) and apply the
  port's authorization policies: HTTP requests that are denied get 403 ``RBAC: access denied``
  with the deciding policy; TCP connections that are denied are reset.
- Before authorization, an HTTP request's JWT is verified (``RequestAuthentication``, Envoy's
  jwt_authn): an invalid token gets 401 with Envoy's message and ``www-authenticate``; a valid
  one gives authorization the request principal and claims, its header is removed unless
  ``forwardOriginalToken``, and ``outputPayloadToHeader`` / ``outputClaimToHeaders`` are written
  (replacing whatever the client sent under those names).
- After authorization, the workload's rate limits (``RateLimitPolicy``, ``sidecar.ratelimit``): a
  request over a limit gets ``429`` with ``Retry-After`` and the ``x-ratelimit-*`` fields.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import contextlib
import logging
import socket
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import uvloop
import uvloop.loop as uvloop_loop

from mesh.security.claims import Authenticated, Rejected, claim_header_value
from sidecar.http1.downstream import DownstreamConnection
from sidecar.http1.exchange import PAUSE_QUEUE
from sidecar.http1.framing import HttpError, RequestHead
from sidecar.http1.wire import error_response
from sidecar.security.guard import InboundGuard, denial_body
from sidecar.tcp.listener import TcpDownstream

if TYPE_CHECKING:
    from sidecar.http1.listener import HttpContext
    from sidecar.security.tls_state import TlsState
    from sidecar.security.wiring import SecurityStats
    from sidecar.tcp.listener import TcpContext

log = logging.getLogger("sidecar.security")

HANDSHAKE_RECORD = 0x16
FIRST_BYTES_TIMEOUT_S = 10.0
HANDSHAKE_TIMEOUT_S = 10.0


def _ssl_protocol_class(loop: asyncio.AbstractEventLoop) -> Any:
    if isinstance(loop, uvloop.Loop):
        return uvloop_loop.SSLProtocol  # type: ignore[attr-defined]  # uvloop's own (Cython) TLS
    return asyncio.sslproto.SSLProtocol


def peer_principal(transport: asyncio.BaseTransport) -> str:
    """The verified peer's SPIFFE ID ("" on plaintext); read once per connection."""
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return ""
    from mesh.security.workload import PeerVerificationError, identity_of_connection  # TLS only: see tls_state

    try:
        identity = identity_of_connection(ssl_object)
    except PeerVerificationError:
        return ""
    return identity.uri if identity is not None else ""


def reset(transport: asyncio.BaseTransport) -> None:
    """Abort with an RST (SO_LINGER 0), Envoy's answer to a denied TCP connection."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):  # not a TCP socket after all
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    cast(asyncio.Transport, transport).abort()


class TlsSniffer(asyncio.Protocol):
    """The first owner of a connection on a STRICT or PERMISSIVE port (see the module doc)."""

    __slots__ = ("_plain", "_secure", "_stats", "_strict", "_timer", "_tls", "transport")

    def __init__(
        self,
        strict: bool,
        tls: TlsState,
        plain: Callable[[], asyncio.Protocol],
        secure: Callable[[], asyncio.Protocol],
        stats: SecurityStats,
    ) -> None:
        self._strict = strict
        self._tls = tls
        self._plain = plain
        self._secure = secure
        self._stats = stats
        self._timer: asyncio.TimerHandle | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self._timer = asyncio.get_running_loop().call_later(FIRST_BYTES_TIMEOUT_S, self.transport.abort)

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or not data:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if data[0] == HANDSHAKE_RECORD:
            context = self._tls.server
            if context is None:  # no certificate (yet, or it expired): TLS cannot be served
                self._stats.count("no_certificate")
                transport.abort()
                return
            self._stats.count("mtls")
            loop = asyncio.get_running_loop()
            protocol = _ssl_protocol_class(loop)(
                loop, self._secure(), context, None, True, None, ssl_handshake_timeout=HANDSHAKE_TIMEOUT_S
            )
            transport.set_protocol(protocol)
            protocol.connection_made(transport)
            _feed(protocol, data)
            return
        if self._strict:
            self._stats.count("plaintext_refused")
            transport.abort()
            return
        self._stats.count("plaintext")
        plain = self._plain()
        transport.set_protocol(plain)
        plain.connection_made(transport)
        plain.data_received(data)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _feed(protocol: Any, data: bytes) -> None:
    """Hand bytes already read to a protocol that reads into its own buffers (``BufferedProtocol``)."""
    if not hasattr(protocol, "get_buffer"):
        protocol.data_received(data)
        return
    view = memoryview(data)
    while view:
        buffer = protocol.get_buffer(len(view))
        size = min(len(buffer), len(view))
        buffer[:size] = view[:size]
        protocol.buffer_updated(size)
        view = view[size:]


class GuardedDownstream(DownstreamConnection):
    """An HTTP connection on a port with request checks (JWT, authorization, rate limits) or mTLS."""

    __slots__ = ("guard", "principal", "security_stats")

    def __init__(self, context: HttpContext, guard: InboundGuard, stats: SecurityStats) -> None:
        super().__init__(context)
        self.guard = guard
        self.security_stats = stats
        self.principal = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.principal = peer_principal(transport)
        super().connection_made(transport)

    def on_request(self, head: RequestHead) -> None:
        if self.lingering or self.error is not None:
            return
        guard = self.guard
        user: Authenticated | None = None
        authenticator = guard.authenticator
        if authenticator is not None:
            outcome = authenticator.authenticate(head.headers, head.query)
            stats = self.security_stats
            if outcome is None:
                stats.jwt(self.context.name, "missing")
            elif isinstance(outcome, Rejected):
                stats.jwt(self.context.name, "denied")
                realm = f"http://{head.host.decode('latin-1')}{head.path}"
                challenge = (("www-authenticate", f'Bearer realm="{_quoted(realm)}", error="invalid_token"'),)
                self._refuse(401, outcome.message, challenge)
                return
            else:
                stats.jwt(self.context.name, "allowed")
                user = outcome
                _rewrite_headers(head, outcome)
        if guard.policies:
            headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in head.headers}
            decision = guard.check_http(
                self.principal,
                self.client_ip,
                head.method.decode("latin-1"),
                head.path,
                head.host.decode("latin-1"),
                headers,
                user.principal if user is not None else "",
                user.claims if user is not None else None,
            )
            if decision is not None:
                self.security_stats.denied(self.context.name, "http", decision.policy or "")
                self._refuse(403, denial_body(decision), (("x-mesh-response-flags", "RBAC"),))
                return
        limiter = guard.limiter
        if limiter is not None:
            refusal = limiter.check(head.method.decode("latin-1"), head.path, head.header, self.client_ip)
            if refusal is not None:
                self.security_stats.rate_limited(self.context.name, refusal)
                self._refuse(429, refusal.message, refusal.headers())
                return
        super().on_request(head)

    def _refuse(self, status: int, body: str, headers: tuple[tuple[str, str], ...]) -> None:
        log.debug("request refused", extra={"listener": self.context.name, "principal": self.principal})
        self.receiving = None  # the refused request's body goes nowhere
        error = HttpError(status, body)
        if self.current is None:
            transport = self.transport
            if transport is not None and not self.closed:
                transport.write(error_response(status, body, close=True, headers=headers))
            self.error = error
            self.close(linger=True)
            return
        self.error = error  # answered after the response in progress, then the connection closes
        self.pause_for(PAUSE_QUEUE)


def _rewrite_headers(head: RequestHead, user: Authenticated) -> None:
    """The verified request's header edits: the token's header goes (unless forwarded), the outputs
    replace any field of the same name the client sent."""
    rule = user.rule
    outputs: list[tuple[bytes, bytes]] = []
    if rule.output_payload_to_header:
        outputs.append((rule.output_payload_to_header.encode("latin-1"), user.payload.encode("latin-1")))
    for header, claim in rule.output_claim_to_headers:
        value = claim_header_value(user.claims, claim)
        if value is not None and "\r" not in value and "\n" not in value and "\0" not in value:
            outputs.append((header.encode("latin-1"), value.encode("utf-8")))
    drop = {name for name, _ in outputs}
    if not rule.forward_original_token and user.location.kind == "header":
        drop.add(user.location.name.encode("latin-1"))
    if drop:
        head.headers[:] = [item for item in head.headers if item[0].lower() not in drop]
    head.headers.extend(outputs)


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


class GuardedTcpDownstream(TcpDownstream):
    """A TCP connection on a port with authorization policies (or mTLS): allowed, or reset."""

    __slots__ = ("guard", "security_stats")

    def __init__(self, context: TcpContext, guard: InboundGuard, stats: SecurityStats) -> None:
        super().__init__(context)
        self.guard = guard
        self.security_stats = stats

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        guard = self.guard
        if guard.policies:
            peer = transport.get_extra_info("peername")
            decision = guard.check_tcp(peer_principal(transport), str(peer[0]) if peer else "")
            if decision is not None:
                self.security_stats.denied(self.context.name, "tcp", decision.policy or "")
                self.closed = True  # never counted as open
                reset(transport)
                return
        super().connection_made(transport)


__all__ = ["GuardedDownstream", "GuardedTcpDownstream", "TlsSniffer", "peer_principal", "reset"]
