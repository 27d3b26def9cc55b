"""The control API's token and per-sidecar secrets over real HTTP (and the decisions without sockets)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from typer.testing import CliRunner

from mesh.cli import app
from mesh.control.auth import ControlAuth, access_of
from mesh.control.server import ControlServer
from mesh.control.tokens import TokenError, read_token_file, resolve_token, token_from_env
from mesh.security.identity import SpiffeId
from mesh.security.workload import build_csr, new_private_key
from tests.mesh.rules.helpers import vs

TOKEN = "s3cr3t-bootstrap-token-4f9a"
WEB = SpiffeId("cluster.local", "shop", "web")
PAYMENTS = SpiffeId("cluster.local", "shop", "payments")
VS_YAML = yaml.safe_dump(vs(http=[{"route": [{"destination": {"host": "reviews"}}]}]))


async def call(
    http: aiohttp.ClientSession, method: str, path: str, payload: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    data = None if payload is None else payload if isinstance(payload, str) else json.dumps(payload)
    async with http.request(method, path, data=data, headers=headers or {}) as response:
        text = await response.text()
        try:
            return response.status, json.loads(text)
        except ValueError:
            return response.status, text


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def guarded(start_control: Callable[..., Any]) -> ControlServer:
    server: ControlServer = await start_control(auth=ControlAuth(TOKEN))
    return server


@pytest.fixture
async def http(guarded: ControlServer) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=guarded.url) as session:
        yield session


async def register(http: aiohttp.ClientSession, sidecar: str, service: str, **headers: str) -> str:
    status, body = await call(
        http,
        "PUT",
        f"/v1/mesh/sidecars/{sidecar}",
        {"service": service, "namespace": "shop"},
        {**bearer(), **headers},
    )
    assert status == 200, body
    secret: str = body["secret"]
    return secret


# === decisions, no sockets ===


def test_access_classes() -> None:
    assert access_of("GET", "/healthz") == "open"
    assert access_of("GET", "/readyz") == "open"
    assert access_of("GET", "/v1/mesh/status") == "read"
    assert access_of("HEAD", "/metrics") == "read"
    assert access_of("PUT", "/v1/mesh/config") == "write"
    assert access_of("POST", "/v1/mesh/ca/sign") == "write"
    assert access_of("GET", "/v1/mesh/sync/web-1") == "sidecar"  # a GET, but a sidecar's
    assert access_of("PUT", "/v1/mesh/sidecars/web-1") == "sidecar"


def test_token_decisions() -> None:
    auth = ControlAuth(TOKEN)
    missing = auth.check_token("PUT", "/v1/mesh/config", "")
    assert missing is not None
    assert (missing.status, missing.missing) == (401, "token")
    wrong = auth.check_token("PUT", "/v1/mesh/config", TOKEN + "x")
    assert wrong is not None
    assert wrong.status == 403
    assert wrong.missing is None
    assert auth.check_token("PUT", "/v1/mesh/config", TOKEN) is None
    assert auth.check_token("GET", "/v1/mesh/status", "") is None
    closed = ControlAuth(TOKEN, token_reads=True)
    refused = closed.check_token("GET", "/v1/mesh/status", "")
    assert refused is not None
    assert refused.status == 401
    assert closed.check_token("GET", "/healthz", "") is None
    assert ControlAuth().check_token("DELETE", "/v1/mesh/config/vs/default/x", "") is None  # no token: open
    assert TOKEN not in repr(auth)


def test_token_file_is_read_once_stripped_and_wins(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(f"  {TOKEN}\n")
    assert read_token_file(path) == TOKEN
    assert resolve_token("from-flag", path) == TOKEN  # Consul: -token-file is used instead of -token
    assert resolve_token(" from-flag ", None) == "from-flag"
    assert token_from_env({"MESH_CONTROL_TOKEN_FILE": str(path), "MESH_CONTROL_TOKEN": "other"}) == TOKEN
    assert token_from_env({"MESH_CONTROL_TOKEN": "other"}) == "other"
    assert token_from_env({}) == ""
    (tmp_path / "empty").write_text("\n \n")
    with pytest.raises(TokenError, match=r"--token-file: .*holds no token"):
        read_token_file(tmp_path / "empty")
    with pytest.raises(TokenError, match="MESH_CONTROL_TOKEN_FILE: cannot read"):
        token_from_env({"MESH_CONTROL_TOKEN_FILE": str(tmp_path / "absent")})
    (tmp_path / "two").write_text("two words")
    with pytest.raises(TokenError, match="one word"):
        read_token_file(tmp_path / "two")


# === the token over HTTP ===


async def test_writes_need_the_token(http: aiohttp.ClientSession) -> None:
    async with http.put("/v1/mesh/config", data=VS_YAML) as response:
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        body = await response.json()
    assert body["missing"] == "token"
    assert "Authorization: Bearer" in body["error"]
    assert "X-Mesh-Token" in body["error"]
    status, body = await call(http, "PUT", "/v1/mesh/config", VS_YAML, bearer("not-the-token"))
    assert status == 403
    assert "missing" not in body
    assert "not valid" in body["error"]
    status, body = await call(http, "PUT", "/v1/mesh/config", VS_YAML, {"X-Mesh-Token": "wrong"})
    assert status == 403
    status, _ = await call(http, "PUT", f"/v1/mesh/config?token={TOKEN}", VS_YAML)
    assert status == 401  # never in the URL (it would end up in proxies' logs)
    status, body = await call(http, "GET", "/v1/mesh/config", headers=None)
    assert status == 200
    assert body["items"] == []

    status, body = await call(http, "PUT", "/v1/mesh/config", VS_YAML, bearer())
    assert status == 200, body
    assert body["resources"][0]["action"] == "created"
    status, body = await call(http, "DELETE", "/v1/mesh/config/vs/default/reviews", headers={"X-Mesh-Token": TOKEN})
    assert status == 200, body
    status, _ = await call(http, "DELETE", "/v1/mesh/config/vs/default/reviews")
    assert status == 401
    async with http.get("/metrics") as response:
        text = await response.text()
    assert 'mesh_control_auth_refused_total{reason="missing_token"}' in text
    assert 'mesh_control_auth_refused_total{reason="wrong_token"}' in text


async def test_reads_are_open_by_default(http: aiohttp.ClientSession) -> None:
    for path in ("/v1/mesh/status", "/v1/mesh/config", "/openapi.json", "/metrics", "/healthz", "/v1/mesh/ca/bundle"):
        async with http.get(path) as response:
            assert response.status == 200, path
    status, _ = await call(http, "GET", "/v1/mesh/explain?source=productpage&host=reviews")
    assert status == 200


async def test_token_reads_closes_reads_but_not_probes(start_control: Callable[..., Any]) -> None:
    server: ControlServer = await start_control(auth=ControlAuth(TOKEN, token_reads=True))
    async with aiohttp.ClientSession(base_url=server.url) as http:
        for path in ("/v1/mesh/status", "/v1/mesh/config", "/openapi.json", "/metrics", "/v1/mesh/ca/bundle"):
            status, body = await call(http, "GET", path)
            assert (status, body["missing"]) == (401, "token"), path
            status, _ = await call(http, "GET", path, headers=bearer("wrong"))
            assert status == 403, path
            async with http.get(path, headers=bearer()) as response:
                assert response.status == 200, path
        for path in ("/healthz", "/readyz"):
            async with http.get(path) as response:
                assert response.status == 200, path


async def test_cli_sends_the_token_from_env_or_flag(guarded: ControlServer, tmp_path: Path) -> None:
    rules = tmp_path / "vs.yaml"
    rules.write_text(VS_YAML)
    runner = CliRunner()

    def mesh(*args: str, **env: str) -> Any:
        return runner.invoke(app, list(args), env={"MESH_CONTROL_ADDR": guarded.url, "MESH_CONTROL_TOKEN": "", **env})

    refused = await asyncio.to_thread(mesh, "apply", "-f", str(rules))
    assert refused.exit_code == 1
    assert "requires a token" in refused.output
    wrong = await asyncio.to_thread(mesh, "apply", "-f", str(rules), "--token", "nope")
    assert wrong.exit_code == 1
    assert "not valid" in wrong.output
    applied = await asyncio.to_thread(mesh, "apply", "-f", str(rules), MESH_CONTROL_TOKEN=TOKEN)
    assert applied.exit_code == 0, applied.output
    assert "VirtualService default/reviews created" in applied.output
    listed = await asyncio.to_thread(mesh, "get", "vs")  # reads stay open
    assert listed.exit_code == 0
    assert "reviews" in listed.output
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    deleted = await asyncio.to_thread(mesh, "delete", "vs", "reviews", MESH_CONTROL_TOKEN_FILE=str(token_file))
    assert deleted.exit_code == 0, deleted.output
    flag = await asyncio.to_thread(mesh, "apply", "-f", str(rules), "--token", TOKEN)
    assert flag.exit_code == 0, flag.output
    for result in (refused, wrong, applied, listed, deleted, flag):
        assert TOKEN not in result.output


def test_control_command_checks_its_token_flags(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["control", "--token-reads"], env={"MESH_CONTROL_TOKEN": ""})
    assert result.exit_code == 2
    assert "--token-reads needs a token" in result.output
    result = runner.invoke(app, ["control", "--token-file", str(tmp_path / "absent")])
    assert result.exit_code == 2
    assert "cannot read" in result.output


# === sidecars: registration, secrets, certificates ===


async def test_registration_needs_the_token_and_answers_a_secret_once(
    http: aiohttp.ClientSession, guarded: ControlServer
) -> None:
    status, body = await call(http, "PUT", "/v1/mesh/sidecars/web-1", {"service": "web", "namespace": "shop"})
    assert (status, body["missing"]) == (401, "token")
    status, _ = await call(http, "GET", "/v1/mesh/sync/web-1?wait=0s")
    assert status == 401  # sync is a sidecar endpoint: the token even for a GET
    secret = await register(http, "web-1", "web")
    assert len(secret) >= 40
    record = guarded.plane.pusher.sidecars["web-1"]
    assert record.secret_digest
    assert secret.encode() not in record.secret_digest
    status, body = await call(http, "GET", "/v1/mesh/status")
    assert secret not in json.dumps(body)

    status, body = await call(http, "GET", "/v1/mesh/sync/web-1?wait=0s", headers=bearer())
    assert (status, body["missing"]) == (401, "sidecar_secret")
    status, body = await call(
        http, "GET", "/v1/mesh/sync/web-1?wait=0s", headers={**bearer(), "X-Mesh-Sidecar-Secret": "guess"}
    )
    assert status == 403
    async with http.get(
        "/v1/mesh/sync/web-1", params={"wait": "0s"}, headers={**bearer(), "X-Mesh-Sidecar-Secret": secret}
    ) as response:
        assert response.status == 200
        assert "snapshot" in await response.json()

    # Re-registering while showing the secret keeps it (no new one in the answer).
    status, body = await call(
        http,
        "PUT",
        "/v1/mesh/sidecars/web-1",
        {"service": "web", "namespace": "shop"},
        {**bearer(), "X-Mesh-Sidecar-Secret": secret},
    )
    assert status == 200
    assert "secret" not in body
    status, _ = await call(http, "DELETE", "/v1/mesh/sidecars/web-1", headers=bearer())
    assert status == 401
    status, _ = await call(
        http, "DELETE", "/v1/mesh/sidecars/web-1", headers={**bearer(), "X-Mesh-Sidecar-Secret": secret}
    )
    assert status == 200
    assert "web-1" not in guarded.plane.pusher.sidecars


async def test_a_sidecar_cannot_obtain_another_sidecars_certificate(http: aiohttp.ClientSession) -> None:
    web_secret = await register(http, "web-1", "web")
    payments_secret = await register(http, "payments-1", "payments")
    key = new_private_key()

    async def sign(sidecar: str, identity: SpiffeId, secret: str | None) -> tuple[int, Any]:
        headers = bearer() if secret is None else {**bearer(), "X-Mesh-Sidecar-Secret": secret}
        payload = {"sidecar": sidecar, "csr": build_csr(identity, key).decode()}
        return await call(http, "POST", "/v1/mesh/ca/sign", payload, headers)

    # web-1, with the shared token and its own secret, asks for payments-1's certificate.
    status, body = await sign("payments-1", PAYMENTS, web_secret)
    assert status == 403, body
    assert "payments-1" in body["error"]
    status, body = await sign("payments-1", PAYMENTS, None)
    assert (status, body["missing"]) == (401, "sidecar_secret")
    # ... and its own registration does not stretch to payments' identity either.
    status, body = await sign("web-1", PAYMENTS, web_secret)
    assert status == 403
    assert "entitled only to" in body["error"]
    # Taking over payments-1's id while it is connected is refused.
    status, body = await call(
        http, "PUT", "/v1/mesh/sidecars/payments-1", {"service": "payments", "namespace": "shop"}, bearer()
    )
    assert status == 409, body
    assert "present its secret" in body["error"]

    status, issued = await sign("payments-1", PAYMENTS, payments_secret)
    assert status == 200, issued
    assert issued["identity"] == PAYMENTS.uri
    status, issued = await sign("web-1", WEB, web_secret)
    assert status == 200
    assert issued["identity"] == WEB.uri
    status, _ = await call(
        http, "POST", "/v1/mesh/ca/sign", {"sidecar": "web-1", "csr": "x"}, {"X-Mesh-Sidecar-Secret": web_secret}
    )
    assert status == 401  # the secret alone is not enough: signing is a write


async def test_without_a_token_the_api_stays_open(start_control: Callable[..., Any]) -> None:
    server: ControlServer = await start_control()
    async with aiohttp.ClientSession(base_url=server.url) as http:
        status, body = await call(http, "PUT", "/v1/mesh/config", VS_YAML)
        assert status == 200, body
        status, body = await call(http, "PUT", "/v1/mesh/sidecars/web-1", {"service": "web", "namespace": "shop"})
        assert status == 200
        assert body["secret"]
        csr = build_csr(WEB, new_private_key()).decode()
        status, body = await call(http, "POST", "/v1/mesh/ca/sign", {"sidecar": "web-1", "csr": csr})
        assert status == 200, body


# === logs ===


async def test_the_token_never_reaches_the_logs(
    start_control: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server: ControlServer = await start_control(auth=ControlAuth(TOKEN))
    secrets: list[str] = []
    async with aiohttp.ClientSession(base_url=server.url) as http:
        await call(http, "PUT", "/v1/mesh/config", VS_YAML, bearer(TOKEN + "-wrong"))
        await call(http, "PUT", "/v1/mesh/config", VS_YAML, bearer())
        secrets.append(await register(http, "web-1", "web"))
        await call(http, "GET", "/v1/mesh/sync/web-1?wait=0s", headers={**bearer(), "X-Mesh-Sidecar-Secret": "x"})
        await call(
            http, "GET", "/v1/mesh/sync/web-1?wait=0s", headers={**bearer(), "X-Mesh-Sidecar-Secret": secrets[0]}
        )
    logged = caplog.text + "".join(json.dumps(r.__dict__, default=str) for r in caplog.records)
    assert "request refused" in logged  # the refusals are logged ...
    assert TOKEN not in logged  # ... without the token
    assert secrets[0] not in logged


async def test_a_token_less_control_plane_beyond_loopback_warns_once(
    start_control: Callable[..., Any], caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.WARNING, logger="mesh.control.server")
    await start_control(http_addr="127.0.0.1:0", data_dir=tmp_path / "a")
    assert "without a token" not in caplog.text
    await start_control(http_addr="127.0.0.1:0", data_dir=tmp_path / "b", auth=ControlAuth(TOKEN))
    assert "without a token" not in caplog.text
    await start_control(http_addr="0.0.0.0:0", data_dir=tmp_path / "c")  # bound, never called from elsewhere
    warnings = [r for r in caplog.records if "without a token" in r.getMessage()]
    assert len(warnings) == 1
