"""Who may call the control API: the token check (a middleware) and the per-sidecar secret check.

With a token set (``mesh control --token``), every request needs it except:

- ``/healthz`` and ``/readyz``, always open (probes carry no credentials and learn nothing);
- ``/ui`` and ``/ui/...``, the web page's static files, always open (they hold no data: the page
  reads the API with the token it is given in its URL fragment, ``#token=...``);
- reads (``GET``/``HEAD``: config, status, explain, ``/openapi.json``, ``/metrics``, the CA
  bundle), open unless ``token_reads`` is set.

The sidecar endpoints (``/v1/mesh/sidecars/...``, ``/v1/mesh/sync/...``) need the token even
for ``GET``, and everything about one registered sidecar (sync, ACK, demand, deregistration, CA
signing) also needs *that* sidecar's secret (``mesh.control.tokens``). A missing credential is
401 with ``"missing": "token"`` or ``"sidecar_secret"``; a wrong one is 403. Without a token
nothing is checked (the API is open, as before; ``mesh control`` warns when it listens beyond
loopback that way). The decisions are plain functions; the middleware only reads headers.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final, Literal

from aiohttp import web

from discovery.runtime.http import request_token
from mesh.control import metrics
from mesh.control.tokens import SECRET_HEADER, TOKEN_HEADER, secret_matches, tokens_match

log = logging.getLogger("mesh.control.auth")

Access = Literal["open", "read", "write", "sidecar"]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

ALWAYS_OPEN: Final = frozenset({"/healthz", "/readyz", "/ui"})
OPEN_PREFIXES: Final = ("/ui/",)  # the web page's static files (no data; it reads the API with the token)
SIDECAR_PREFIXES: Final = ("/v1/mesh/sidecars/", "/v1/mesh/sync/")
READ_METHODS: Final = frozenset({"GET", "HEAD"})
HOW_TO_SEND: Final = (
    f"send Authorization: Bearer <token> or {TOKEN_HEADER} (mesh CLI and sidecars: MESH_CONTROL_TOKEN or --token)"
)


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int  # 401: a credential is missing; 403: the one presented is wrong
    message: str
    reason: str  # the metric label
    missing: str | None = None  # "token" or "sidecar_secret" on a 401


class AuthError(Exception):
    """A refused request; the API's error middleware turns it into JSON (with ``WWW-Authenticate`` on 401)."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal


@dataclass(frozen=True, slots=True)
class ControlAuth:
    token: str = field(default="", repr=False)  # "" : the API is open
    token_reads: bool = False  # reads need the token too

    @property
    def enforced(self) -> bool:
        return bool(self.token)

    def describe(self) -> str:
        """What is protected, for the start-up log (never the token)."""
        if not self.enforced:
            return "none"
        return "token for writes, sidecars and reads" if self.token_reads else "token for writes and sidecars"

    def check_token(self, method: str, path: str, presented: str) -> Refusal | None:
        """None when a request with this method, path and presented token (""=none) may proceed."""
        if not self.enforced or not needs_token(access_of(method, path), self.token_reads):
            return None
        if not presented:
            return Refusal(401, f"this control plane requires a token: {HOW_TO_SEND}", "missing_token", "token")
        if not tokens_match(presented, self.token):
            return Refusal(403, "the token presented is not valid for this control plane", "wrong_token")
        return None

    def check_secret(self, sidecar_id: str, digest: bytes, presented: str) -> Refusal | None:
        """None when the caller may act for registered sidecar ``sidecar_id`` (whose secret hashes to ``digest``)."""
        if not self.enforced:
            return None
        if not presented:
            return Refusal(
                401,
                f"sidecar {sidecar_id!r} must present its secret: send {SECRET_HEADER} with the secret its "
                "registration returned (register again if it was lost)",
                "missing_secret",
                "sidecar_secret",
            )
        if not secret_matches(presented, digest):
            return Refusal(403, f"the secret presented is not sidecar {sidecar_id!r}'s", "wrong_secret")
        return None


def access_of(method: str, path: str) -> Access:
    if path in ALWAYS_OPEN or path.startswith(OPEN_PREFIXES):
        return "open"
    if path.startswith(SIDECAR_PREFIXES):
        return "sidecar"
    return "read" if method.upper() in READ_METHODS else "write"


def needs_token(access: Access, token_reads: bool) -> bool:
    return access in ("write", "sidecar") or (access == "read" and token_reads)


AUTH: Final = web.AppKey("auth", ControlAuth)


def presented_secret(request: web.Request) -> str:
    return request.headers.get(SECRET_HEADER, "").strip()


def require_sidecar_secret(request: web.Request, sidecar_id: str, digest: bytes) -> None:
    """Raise ``AuthError`` unless the request carries registered sidecar ``sidecar_id``'s secret."""
    refusal = request.app[AUTH].check_secret(sidecar_id, digest, presented_secret(request))
    if refusal is not None:
        refuse(request, refusal)


def refuse(request: web.Request, refusal: Refusal) -> None:
    metrics.AUTH_REFUSED.labels(refusal.reason).inc()
    # Never the credential itself: only what was wrong, where, and from whom.
    level = logging.WARNING if refusal.status == 403 else logging.DEBUG
    log.log(
        level,
        "request refused",
        extra={"reason": refusal.reason, "method": request.method, "path": request.path, "peer": request.remote},
    )
    raise AuthError(refusal)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    auth = request.app[AUTH]
    if auth.enforced:
        refusal = auth.check_token(request.method, request.path, request_token(request, TOKEN_HEADER, None))
        if refusal is not None:
            refuse(request, refusal)
    return await handler(request)


def auth_error_response(exc: AuthError) -> web.Response:
    refusal = exc.refusal
    body: dict[str, str] = {"error": refusal.message}
    if refusal.missing is not None:
        body["missing"] = refusal.missing
    response = web.json_response(body, status=refusal.status)
    if refusal.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="mesh-control"'
    return response


__all__ = [
    "AUTH",
    "Access",
    "AuthError",
    "ControlAuth",
    "Refusal",
    "access_of",
    "auth_error_response",
    "auth_middleware",
    "needs_token",
    "presented_secret",
    "refuse",
    "require_sidecar_secret",
]
