"""RequestAuthentication enforced by a real inbound sidecar in front of a real backend (aiohttp clients)."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import aiohttp

from tests.mesh.security.jwt_keys import ISSUER, ec_key, jwks, rsa_key
from tests.sidecar.conftest import BackendFactory
from tests.sidecar.security.mesh_pair import server_config, start_with, stop

RSA = rsa_key()
EC = ec_key()
JWT_RULE: dict[str, Any] = {"issuer": ISSUER, "jwks": jwks(RSA, EC), "audiences": ["bookinfo"]}


def request_authentication(**rule: Any) -> dict[str, Any]:
    return {"namespace": "default", "name": "jwt", "spec": {"jwtRules": [{**JWT_RULE, **rule}]}}


def require_jwt(**source: Any) -> dict[str, Any]:
    return {
        "namespace": "default",
        "name": "require-jwt",
        "spec": {"action": "ALLOW", "rules": [{"from": [{"source": source or {"requestPrincipals": ["*"]}}]}]},
    }


async def call(port: int, token: str | None = None, path: str = "/items", **headers: str) -> tuple[int, str, Any]:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    url = f"http://127.0.0.1:{port}{path}"
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
        text = await response.text()
        return response.status, text, response.headers


async def test_tokens_checked_and_claims_authorize(backend_factory: BackendFactory) -> None:
    backend = await backend_factory("b1")
    security = {
        "mtls": {"mode": "DISABLE"},
        "request_authentication": [request_authentication()],
        "authorization": [
            require_jwt(),
            {
                "namespace": "default",
                "name": "deny-interns",
                "spec": {
                    "action": "DENY",
                    "rules": [{"when": [{"key": "request.auth.claims[groups]", "values": ["intern"]}]}],
                },
            },
        ],
    }
    server = await start_with(server_config(backend, security), None)
    port = server.listener_port("inbound")
    try:
        status, _, _ = await call(port, RSA.token({"aud": "bookinfo", "groups": ["dev"]}))
        assert status == 200
        assert "authorization" not in backend.seen[-1]["headers"]  # forwardOriginalToken is false
        assert (await call(port, EC.token({"aud": "bookinfo"})))[0] == 200
        status, text, _ = await call(port)  # no token: RequestAuthentication lets it by, the policy does not
        assert status == 403
        assert "RBAC: access denied" in text
        status, text, headers = await call(port, RSA.token({"aud": "bookinfo"}, exp=int(time.time()) - 3600))
        assert (status, text.strip()) == (401, "Jwt is expired")
        assert headers["www-authenticate"].startswith('Bearer realm="http://127.0.0.1:')
        assert 'error="invalid_token"' in headers["www-authenticate"]
        assert (await call(port, RSA.token({"aud": "other"})))[1].strip() == "Audiences in Jwt are not allowed"
        assert (await call(port, rsa_key().token({"aud": "bookinfo"})))[1].strip() == "Jwt verification fails"
        status, text, _ = await call(port, RSA.token({"aud": "bookinfo", "groups": ["dev", "intern"]}))
        assert status == 403
        assert "default/deny-interns" in text
        outcomes = server.security.stats.jwt_outcomes
        assert outcomes[("inbound", "allowed")] == 3
        assert outcomes[("inbound", "denied")] == 3
        assert outcomes[("inbound", "missing")] == 1
        assert len(backend.seen) == 2
    finally:
        await stop(server)


async def test_a_missing_token_passes_without_a_policy(backend_factory: BackendFactory) -> None:
    backend = await backend_factory("b1")
    security = {"mtls": {"mode": "DISABLE"}, "request_authentication": [request_authentication()]}
    server = await start_with(server_config(backend, security), None)
    try:
        assert (await call(server.listener_port("inbound")))[0] == 200
        assert (await call(server.listener_port("inbound"), "garbage"))[0] == 401
    finally:
        await stop(server)


async def test_outputs_forwarding_and_spoofed_headers(backend_factory: BackendFactory) -> None:
    backend = await backend_factory("b1")
    rule = {
        "forwardOriginalToken": True,
        "outputPayloadToHeader": "x-jwt-payload",
        "outputClaimToHeaders": [{"header": "x-user", "claim": "sub"}, {"header": "x-level", "claim": "level"}],
        "fromHeaders": [{"name": "x-token"}],
    }
    security = {"mtls": {"mode": "DISABLE"}, "request_authentication": [request_authentication(**rule)]}
    server = await start_with(server_config(backend, security), None)
    token = RSA.token({"aud": "bookinfo", "sub": "carol", "level": 3})
    try:
        status, _, _ = await call(server.listener_port("inbound"), None, **{"x-token": token, "x-user": "mallory"})
        assert status == 200
        seen = backend.seen[-1]["headers"]
        assert seen["x-token"] == token
        assert seen["x-user"] == "carol"  # what the client sent under that name is replaced
        assert seen["x-level"] == "3"
        payload = json.loads(base64.urlsafe_b64decode(seen["x-jwt-payload"] + "=="))
        assert payload["sub"] == "carol"
    finally:
        await stop(server)
