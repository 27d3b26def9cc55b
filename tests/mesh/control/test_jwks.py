"""The control plane fetches RequestAuthentication key sets (jwksUri, OpenID discovery), refuses rules
whose keys it cannot get, sends the keys inline to the sidecars it selects, and follows rotations."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from mesh.control.server import ControlServer
from mesh.model.parse import parse_snapshot
from tests.mesh.control.fixtures import FAST
from tests.mesh.rules.helpers import doc
from tests.mesh.security.jwt_keys import jwks, rsa_key
from tests.sidecar.helpers import serve_app


@dataclass
class KeyServer:
    """An identity provider on loopback: a key set, an OpenID discovery document, and a broken endpoint."""

    keys: str
    runner: web.AppRunner | None = None
    port: int = 0
    hits: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> KeyServer:
        app = web.Application()
        app.router.add_get("/keys", self._keys)
        app.router.add_get("/.well-known/openid-configuration", self._discovery)
        app.router.add_get("/broken", self._broken)
        self.runner, self.port = await serve_app(app)
        return self

    async def _keys(self, request: web.Request) -> web.Response:
        self.hits.append(request.path)
        return web.Response(text=self.keys, content_type="application/json")

    async def _discovery(self, request: web.Request) -> web.Response:
        self.hits.append(request.path)
        return web.json_response({"issuer": self.url, "jwks_uri": f"{self.url}/keys"})

    async def _broken(self, request: web.Request) -> web.Response:
        return web.Response(text='{"keys": [{"kty": "RSA"}]}', content_type="application/json")


@pytest.fixture
async def idp() -> AsyncIterator[KeyServer]:
    server = await KeyServer(jwks(rsa_key("k1"))).start()
    yield server
    assert server.runner is not None
    await server.runner.cleanup()


def request_authentication(rule: dict[str, Any]) -> bytes:
    spec = {"selector": {"matchLabels": {"app": "productpage"}}, "jwtRules": [rule]}
    return json.dumps(doc("RequestAuthentication", "jwt", spec, "default")).encode()


async def sync_until(api: aiohttp.ClientSession, wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """Long-poll the sidecar's snapshots (as a sidecar does) until one satisfies ``wanted``."""
    version = ""
    for _ in range(40):
        params = {"wait": "5s", **({"version": version} if version else {})}
        async with api.get("/v1/mesh/sync/pp-1", params=params) as response:
            assert response.status == 200, await response.text()
            answer: dict[str, Any] = await response.json()
        if wanted(answer):
            return answer
        version = answer["version"]
    pytest.fail("no snapshot as wanted reached the sidecar")


def keys_of(answer: dict[str, Any]) -> dict[str, Any] | None:
    """The inline key set of the one JWT rule in the snapshot (None: no such rule or no keys yet)."""
    entries = answer["snapshot"].get("security", {}).get("request_authentication", [])
    if not entries:
        return None
    rule = entries[0]["spec"]["jwtRules"][0]
    assert "jwksUri" not in rule
    return json.loads(rule["jwks"]) if "jwks" in rule else None


async def session_for(start_control: Callable[..., Any]) -> tuple[ControlServer, aiohttp.ClientSession]:
    control: ControlServer = await start_control(settings=replace(FAST, jwks_refresh=0.2))
    api = aiohttp.ClientSession(base_url=control.url)
    registration = {"service": "productpage", "labels": {"app": "productpage"}, "bootstrap": {}}
    async with api.put("/v1/mesh/sidecars/pp-1", json=registration) as response:
        assert response.status == 200
    return control, api


async def test_jwks_uri_is_fetched_inlined_and_rotated(start_control: Callable[..., Any], idp: KeyServer) -> None:
    _, api = await session_for(start_control)
    async with api:
        body = request_authentication({"issuer": idp.url, "jwksUri": f"{idp.url}/keys"})
        async with api.put("/v1/mesh/config", data=body) as r:
            assert r.status == 200, await r.text()
        answer = await sync_until(api, lambda a: keys_of(a) == json.loads(idp.keys))
        parse_snapshot(answer["snapshot"])  # what the sidecar will read
        idp.keys = jwks(rsa_key("k2"))  # the provider rotates its key
        answer = await sync_until(api, lambda a: keys_of(a) == json.loads(idp.keys))
        assert keys_of(answer)["keys"][0]["kid"] == "k2"  # type: ignore[index]


async def test_openid_discovery_when_no_keys_are_named(start_control: Callable[..., Any], idp: KeyServer) -> None:
    _, api = await session_for(start_control)
    async with api:
        async with api.put("/v1/mesh/config", data=request_authentication({"issuer": idp.url})) as r:
            assert r.status == 200, await r.text()
        await sync_until(api, lambda a: keys_of(a) == json.loads(idp.keys))
        assert idp.hits[:2] == ["/.well-known/openid-configuration", "/keys"]


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("/broken", "did not answer a usable key set: keys[0]: unusable key"),
        ("/missing", "answered HTTP 404"),
    ],
)
async def test_unusable_key_sources_refuse_the_apply(
    start_control: Callable[..., Any], idp: KeyServer, where: str, message: str
) -> None:
    control, api = await session_for(start_control)
    async with api:
        body = request_authentication({"issuer": idp.url, "jwksUri": f"{idp.url}{where}"})
        for dry_run in ("true", "false"):
            async with api.put("/v1/mesh/config", data=body, params={"dry_run": dry_run}) as r:
                error = await r.json()
                assert r.status == 400, error
        assert error["path"] == "spec.jwtRules[0].jwksUri"
        assert message in error["error"]
        assert error["resource"] == "RequestAuthentication default/jwt"
        assert not control.plane.state.listing("RequestAuthentication")


async def test_an_unreachable_provider_is_named(start_control: Callable[..., Any]) -> None:
    _, api = await session_for(start_control)
    async with api:
        closed = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
        port = closed.sockets[0].getsockname()[1]
        closed.close()
        await closed.wait_closed()
        body = request_authentication({"issuer": "https://x.example", "jwksUri": f"http://127.0.0.1:{port}/keys"})
        async with api.put("/v1/mesh/config", data=body) as r:
            error = await r.json()
        assert r.status == 400
        assert error["error"].startswith(f"fetching http://127.0.0.1:{port}/keys failed")
