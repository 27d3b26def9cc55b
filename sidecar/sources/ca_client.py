"""The mesh CA as the sidecar reaches it through the control plane (``sidecar.security.agent.Signer``).

``GET /v1/mesh/ca/bundle`` gives the trust domain; ``POST /v1/mesh/ca/sign`` with this sidecar's id,
its CSR and its registration's secret (``X-Mesh-Sidecar-Secret``) gives the certificate chain and
the trust bundle. Signing waits until the sidecar has registered (the CA signs only for a
registered sidecar, the identity its registration entitles it to).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp

from sidecar.security.agent import CertificateError

Request = Callable[..., Awaitable[tuple[int, bytes]]]


class ControlPlaneSigner:
    def __init__(self, request: Request, sidecar_id: str, registered: Callable[[], Awaitable[object]]) -> None:
        self._request = request
        self._sidecar_id = sidecar_id
        self._registered = registered

    async def trust_domain(self) -> str:
        status, body = await self._call("GET", "/v1/mesh/ca/bundle")
        answer = _answer(status, body, "trust bundle")
        domain = answer.get("trust_domain")
        if not isinstance(domain, str) or not domain:
            raise CertificateError("the CA's bundle answer has no trust_domain")
        return domain

    async def sign(self, csr_pem: bytes) -> tuple[str, str]:
        await self._registered()
        body = {"sidecar": self._sidecar_id, "csr": csr_pem.decode("ascii")}
        status, raw = await self._call("POST", "/v1/mesh/ca/sign", json_body=body)
        answer = _answer(status, raw, "signing request")
        chain, bundle = answer.get("cert_chain"), answer.get("trust_bundle")
        if not isinstance(chain, str) or not isinstance(bundle, str):
            raise CertificateError("the CA's answer lacks cert_chain or trust_bundle")
        return chain, bundle

    async def _call(self, method: str, path: str, **options: Any) -> tuple[int, bytes]:
        try:
            return await self._request(method, path, **options)
        except aiohttp.ClientError as exc:
            raise CertificateError(f"{method} {path}: {exc or type(exc).__name__}") from exc


def _answer(status: int, body: bytes, what: str) -> Mapping[str, Any]:
    try:
        answer = json.loads(body) if body else {}
    except ValueError:
        answer = {}
    if status != 200:
        reason = answer.get("error") if isinstance(answer, dict) else None
        if status == 404 and what == "trust bundle":
            reason = "the control plane runs no CA"
        raise CertificateError(f"{what} answered {status}: {reason or body[:200]!r}")
    if not isinstance(answer, dict):
        raise CertificateError(f"{what}: the answer is not a JSON object")
    return answer


__all__ = ["ControlPlaneSigner"]
