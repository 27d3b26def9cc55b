"""The CA's HTTP endpoints: ``POST /v1/mesh/ca/sign`` (CSR in, certificate chain out), ``GET /v1/mesh/ca/bundle``.

``sign`` takes JSON ``{"sidecar": ID, "csr": PEM[, "ttl": "12h"]}``: the sidecar must be
registered (``PUT /v1/mesh/sidecars/{id}``), with a token set the caller must show that sidecar's
secret (``X-Mesh-Sidecar-Secret``, ``mesh.control.auth``; else 401/403), and the CSR must ask for
exactly the identity that registration entitles it to (``mesh.control.certificates``); else 404,
403 or 400 with the reason.
The answer is ``{"identity", "cert_chain" (PEM: leaf, then intermediates), "trust_bundle" (PEM),
"serial", "not_before", "not_after"}``. ``bundle`` answers ``{"trust_domain", "trust_bundle"}``,
or the PEM alone with ``?format=pem``. Errors go through the API's one error middleware.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final

from aiohttp import web

from discovery.durations import DurationError, parse_duration
from mesh.control import metrics
from mesh.control.auth import AuthError, require_sidecar_secret
from mesh.control.certificates import entitled_identity
from mesh.control.plane import ControlPlane
from mesh.security.ca import CaError, CsrRejected, IdentityNotAllowed, MeshCA
from mesh.security.identity import IdentityError

log = logging.getLogger("mesh.control.ca")

MAX_CSR_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class CaContext:
    ca: MeshCA
    plane: ControlPlane  # for the registered sidecars


CA: Final = web.AppKey("ca", CaContext)


class CaApiError(Exception):
    def __init__(self, status: int, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.path = path


def add_ca_routes(app: web.Application, ca: MeshCA, plane: ControlPlane) -> None:
    app[CA] = CaContext(ca, plane)
    app.add_routes([web.post("/v1/mesh/ca/sign", sign), web.get("/v1/mesh/ca/bundle", bundle)])


async def sign(request: web.Request) -> web.Response:
    ca, plane = request.app[CA].ca, request.app[CA].plane
    body = await _body(request)
    sidecar_id = _text(body, "sidecar")
    csr = _text(body, "csr")
    ttl = _ttl(body.get("ttl"))
    record = plane.pusher.sidecars.get(sidecar_id)
    if record is None:
        _count("unknown_sidecar")
        raise CaApiError(
            404, f"unknown sidecar {sidecar_id!r}: register it with PUT /v1/mesh/sidecars/{sidecar_id}", "sidecar"
        )
    try:
        require_sidecar_secret(request, record.id, record.secret_digest)  # one sidecar cannot sign for another
    except AuthError:
        _count("forbidden")
        raise
    try:
        identity = entitled_identity(record.registration, ca.trust_domain)
    except IdentityError as exc:
        _count("rejected")
        raise CaApiError(400, f"the sidecar's registration cannot form a SPIFFE ID: {exc}", "sidecar") from exc
    try:
        # Signing is CPU work (an ECDSA signature, well under a millisecond): fine on the loop, but
        # run in a thread anyway so a burst of renewals never delays long polls.
        issued = await asyncio.to_thread(ca.sign, csr, identity, ttl=ttl)
    except IdentityNotAllowed as exc:
        _count("forbidden")
        log.warning("CSR refused", extra={"sidecar": sidecar_id, "reason": str(exc)})
        raise CaApiError(403, str(exc), "csr") from exc
    except CsrRejected as exc:
        _count("rejected")
        raise CaApiError(400, str(exc), "csr") from exc
    except CaError as exc:  # the CA itself cannot sign (its certificate expired)
        _count("ca_unavailable")
        log.error("the CA cannot sign: %s", exc)
        raise CaApiError(503, f"the CA cannot sign: {exc}") from exc
    _count("issued")
    log.info(
        "certificate issued",
        extra={
            "sidecar": sidecar_id,
            "identity": identity.uri,
            "serial": issued.serial,
            "not_after": str(issued.not_after),
        },
    )
    return web.json_response(
        {
            "identity": identity.uri,
            "cert_chain": issued.chain_pem(),
            "trust_bundle": ca.bundle_pem(),
            "serial": issued.serial,
            "not_before": issued.not_before.isoformat(),
            "not_after": issued.not_after.isoformat(),
        }
    )


async def bundle(request: web.Request) -> web.Response:
    ca = request.app[CA].ca
    if request.query.get("format") == "pem":
        return web.Response(text=ca.bundle_pem(), content_type="application/x-pem-file")
    return web.json_response({"trust_domain": ca.trust_domain, "trust_bundle": ca.bundle_pem()})


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()  # bounded by the app's client_max_size
    if len(raw) > MAX_CSR_BYTES:
        raise CaApiError(413, f"the request body is larger than {MAX_CSR_BYTES} bytes")
    try:
        body = json.loads(raw or b"{}")
    except ValueError as exc:
        raise CaApiError(400, f"body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise CaApiError(400, 'body must be a JSON object {"sidecar": ..., "csr": ...}')
    unknown = sorted(set(body) - {"sidecar", "csr", "ttl"})
    if unknown:
        raise CaApiError(400, f"unknown key {unknown[0]!r} (known: sidecar, csr, ttl)", unknown[0])
    return body


def _text(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise CaApiError(400, f"{key} is required (a non-empty string)", key)
    return value


def _ttl(value: object) -> timedelta | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise CaApiError(400, f'ttl must be a duration string such as "12h", got {value!r}', "ttl")
    try:
        return timedelta(seconds=parse_duration(value))
    except DurationError as exc:
        raise CaApiError(400, f"invalid ttl {value!r}: {exc}", "ttl") from exc


def _count(result: str) -> None:
    metrics.CA_CSRS.labels(result).inc()


__all__ = ["CA", "CaApiError", "CaContext", "add_ca_routes"]
