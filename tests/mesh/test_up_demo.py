"""`mesh up --demo`: the plan (pure), the demo app's pieces, and the whole thing as a real process.

The end-to-end test runs ``mesh up --demo`` on free ports with a temporary data dir, goes through
productpage's sidecar, applies examples/bookinfo's header-routing rule through the control API,
resolves ``reviews`` with dnspython, then stops it with SIGTERM and checks no child outlives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import dns.asyncresolver
import pytest

from mesh.demo.app import forwarded_headers, render_page, review_entries
from mesh.demo.plan import DEFAULT_BASE_PORT, WORKLOADS, plan_workloads
from mesh.demo.processes import DEMO_FILE, child_env, free_port

BOOKINFO = Path(__file__).resolve().parents[2] / "examples" / "bookinfo"
TOKEN = "demo-control-token"


# === the plan ===


def test_fixed_ports_come_in_blocks_of_ten_clear_of_the_mesh_defaults() -> None:
    workloads = plan_workloads(DEFAULT_BASE_PORT, free_port)
    assert [w.id for w in workloads] == [f"{s}-{v}" for s, v, _ in WORKLOADS]
    page = workloads[0]
    assert (page.ports.app, page.ports.inbound, page.ports.outbound, page.ports.admin) == (19080, 19081, 19082, 19083)
    ports = [p for w in workloads for p in (w.ports.app, w.ports.inbound, w.ports.outbound, w.ports.admin)]
    assert len(set(ports)) == len(ports) == 24
    assert not set(ports) & {8500, 8600, 9153, 15000, 15001, 15006, 15010}


def test_base_port_zero_takes_free_ports_and_bad_bases_name_the_flag() -> None:
    counter = iter(range(40000, 40100))
    workloads = plan_workloads(0, lambda: next(counter))
    assert workloads[1].ports.app == 40004
    for bad in (80, 65530):
        with pytest.raises(ValueError, match="--demo-base-port"):
            plan_workloads(bad, free_port)


def test_registration_is_the_sidecar_inbound_port_with_the_version() -> None:
    reviews_v2 = plan_workloads(DEFAULT_BASE_PORT, free_port)[3]
    body = reviews_v2.registration().to_json()
    assert body["Name"] == "reviews"
    assert body["ID"] == "demo-reviews-v2"
    assert body["Port"] == reviews_v2.ports.inbound
    assert body["Meta"]["version"] == "v2"
    assert body["Checks"][0]["HTTP"] == f"http://127.0.0.1:{reviews_v2.ports.app}/healthz"
    env = reviews_v2.sidecar_env("http://127.0.0.1:15010", "http://127.0.0.1:8500", Path("/data"))
    assert env["MESH_DATA_DIR"] == "/data/demo/reviews-v2"  # its own snapshot dir, not shared with v1/v3


def test_children_do_not_inherit_mesh_up_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESH_UPSTREAM", "9.9.9.9:53")  # a DNS upstream for `mesh up`, nonsense to a sidecar
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", "secret")
    env = child_env({"MESH_CONTROL_ADDR": "http://127.0.0.1:1"})
    assert "MESH_UPSTREAM" not in env
    assert "CONSUL_HTTP_TOKEN" not in env
    assert env["MESH_CONTROL_ADDR"] == "http://127.0.0.1:1"


# === the app ===


def test_reviews_versions_show_no_black_or_red_stars_or_the_ratings_error() -> None:
    ratings = {"ratings": {"Reviewer1": 5, "Reviewer2": 4}}
    assert "rating" not in review_entries("v1", ratings)[0]
    assert review_entries("v2", ratings)[0]["rating"] == {"stars": 5, "color": "black"}
    assert review_entries("v3", ratings)[1]["rating"] == {"stars": 4, "color": "red"}
    assert review_entries("v3", {"error": "ratings answered 500"})[0]["rating"] == {"error": "ratings answered 500"}


def test_the_user_and_tracing_headers_are_passed_on() -> None:
    incoming = {"end-user": "jason", "x-request-id": "abc", "cookie": "x", "traceparent": "00-1-2-01"}
    assert forwarded_headers(incoming) == {"end-user": "jason", "x-request-id": "abc", "traceparent": "00-1-2-01"}
    assert forwarded_headers({}, user="<jason>") == {"end-user": "<jason>"}


def test_the_page_names_who_served_each_part_escaped() -> None:
    page = {
        "served_by": "productpage-v1",
        "user": "<b>",
        "details": {"error": "details answered 503"},
        "reviews": {"served_by": "reviews-v3", "reviews": review_entries("v3", {"ratings": {"Reviewer1": 2}})},
    }
    text = render_page(page)
    assert "for user &lt;b&gt;" in text
    assert "details: error: details answered 503" in text
    assert "reviews served by reviews-v3" in text
    assert "color:red'>★★<" in text


# === end to end ===


@dataclass
class Demo:
    process: subprocess.Popen[bytes]
    registry: str
    control: str
    dns_port: int
    data_dir: Path
    workloads: dict[str, dict[str, Any]]

    def port(self, workload: str, listener: str) -> int:
        return int(self.workloads[workload][listener])

    @property
    def productpage(self) -> str:
        return f"http://127.0.0.1:{self.port('productpage-v1', 'inbound')}/productpage"


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (from /proc's children lists)."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            with contextlib.suppress(OSError):
                for child in (task / "children").read_text().split():
                    if int(child) not in found:
                        found.add(int(child))
                        todo.append(int(child))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    registry, dns_port, metrics, control = free_port(), free_port(), free_port(), free_port()
    # with a control-plane token: the demo's sidecars must be given it to register and sync
    env = {**os.environ, "MESH_UP_REGISTRAR": "off", "MESH_LOG_LEVEL": "warning", "MESH_CONTROL_TOKEN": TOKEN}
    argv = [sys.executable, "-m", "mesh.cli", "up", "--demo", "--demo-base-port", "0"]
    argv += ["--data-dir", str(tmp_path), "--http-addr", f"127.0.0.1:{registry}"]
    argv += ["--dns-addr", f"127.0.0.1:{dns_port}", "--metrics-addr", f"127.0.0.1:{metrics}"]
    argv += ["--control-http-addr", f"127.0.0.1:{control}"]
    process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL)
    seen: set[int] = set()
    try:
        deadline = time.monotonic() + 90
        while not (tmp_path / DEMO_FILE).is_file():
            assert process.poll() is None, f"mesh up --demo exited with {process.returncode}"
            assert time.monotonic() < deadline, "mesh up --demo never became ready"
            time.sleep(0.1)
        listing = json.loads((tmp_path / DEMO_FILE).read_text())
        assert listing["pid"] == process.pid
        seen = descendants(process.pid)
        yield Demo(
            process,
            f"http://127.0.0.1:{registry}",
            f"http://127.0.0.1:{control}",
            dns_port,
            tmp_path,
            {w["id"]: w for w in listing["workloads"]},
        )
    finally:
        if process.poll() is None:
            seen |= descendants(process.pid)
            process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=30)
        for pid in seen | ({process.pid} if process.poll() is None else set()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)  # only after a failure: the test below asserts none is left


async def page(http: aiohttp.ClientSession, demo: Demo, user: str = "") -> dict[str, Any]:
    headers = {"end-user": user} if user else {}
    async with http.get(demo.productpage, params={"format": "json"}, headers=headers) as r:
        assert r.status == 200, await r.text()
        body: dict[str, Any] = await r.json()
        return body


async def apply(http: aiohttp.ClientSession, demo: Demo, filename: str, *, every: bool = False) -> int:
    """PUT an examples/bookinfo file as `mesh apply` sends it; wait until productpage's sidecar (``every``:
    every sidecar) ACKed it."""
    body = (BOOKINFO / filename).read_bytes()
    headers = {"Content-Type": "application/yaml", "Authorization": f"Bearer {TOKEN}"}
    async with http.put(f"{demo.control}/v1/mesh/config", data=body, headers=headers) as r:
        result = await r.json()
        assert r.status == 200, result
    version = int(result["version"])
    deadline = time.monotonic() + 15
    sidecars: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        async with http.get(f"{demo.control}/v1/mesh/status") as r:
            sidecars = (await r.json())["sidecars"]
        waited = [s for s in sidecars if every or s["service"] == "productpage"]
        if waited and all(s.get("config_version", -1) >= version and s.get("in_sync") for s in waited):
            return version
        await asyncio.sleep(0.05)
    raise AssertionError(f"productpage's sidecar never ACKed config version {version}: {sidecars}")


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
        yield session


@pytest.mark.slow
async def test_mesh_up_demo_routes_resolves_and_stops_every_child(demo: Demo, http: aiohttp.ClientSession) -> None:
    children = descendants(demo.process.pid)
    assert len(children) >= 12  # six apps and six sidecars

    # productpage through its sidecar: details and some version of reviews, each through two sidecars
    first = await page(http, demo)
    assert first["served_by"] == "productpage-v1"
    assert first["details"]["served_by"] == "details-v1"
    assert first["reviews"]["served_by"] in {"reviews-v1", "reviews-v2", "reviews-v3"}
    async with http.get(demo.productpage) as r:
        html = await r.text()
    assert "details served by details-v1" in html
    assert "reviews served by reviews-v" in html

    # examples/bookinfo's header routing: jason gets v2 (with ratings), everyone else v1
    rules = (BOOKINFO / "destination-rule-all.yaml").read_bytes()
    async with http.put(f"{demo.control}/v1/mesh/config", data=rules) as r:
        assert r.status == 401  # the token is enforced, and the sidecars above got it
    await apply(http, demo, "destination-rule-all.yaml")
    await apply(http, demo, "virtual-service-reviews-test-v2.yaml")
    for _ in range(4):
        jason = await page(http, demo, "jason")
        assert jason["reviews"]["served_by"] == "reviews-v2"
        assert jason["reviews"]["reviews"][0]["rating"] == {"stars": 5, "color": "black"}
        assert (await page(http, demo))["reviews"]["served_by"] == "reviews-v1"

    # cluster DNS: the three reviews instances, at their sidecars' inbound ports
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = demo.dns_port
    answer = await resolver.resolve("reviews.service.consul", "SRV")
    inbound = {demo.port(f"reviews-{v}", "inbound") for v in ("v1", "v2", "v3")}
    assert {record.port for record in answer} == inbound
    (address,) = await resolver.resolve("details.service.consul", "A")
    assert address.to_text() == "127.0.0.1"

    # SIGTERM: every child stops with it, the demo listing goes
    demo.process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(demo.process.wait, 30) == 0
    assert not [pid for pid in children if alive(pid)]
    assert not (demo.data_dir / DEMO_FILE).exists()


@pytest.mark.slow
async def test_mesh_up_demo_strict_mtls_and_istio_authorization_task(demo: Demo, http: aiohttp.ClientSession) -> None:
    """examples/bookinfo's security files: sidecars speak mTLS among themselves (certificates from the
    control plane's CA), STRICT refuses plaintext, and Istio's authorization task plays out step by step."""

    def served(body: dict[str, Any]) -> tuple[str, str]:
        return body["details"].get("served_by", ""), body["reviews"].get("served_by", "")

    await apply(http, demo, "peer-authentication-strict.yaml", every=True)
    for _ in range(3):  # every hop between sidecars is mTLS now (a plaintext one would be refused)
        details, reviews = served(await page(http, demo))
        assert details == "details-v1"
        assert reviews.startswith("reviews-v")
    reviews_inbound = f"http://127.0.0.1:{demo.port('reviews-v1', 'inbound')}/reviews/0"
    with pytest.raises(aiohttp.ClientError):
        async with http.get(reviews_inbound) as r:  # plaintext from outside the mesh
            await r.read()

    await apply(http, demo, "authorization-policy-allow-nothing.yaml", every=True)
    async with http.get(demo.productpage, params={"format": "json"}) as r:
        assert r.status == 403
        assert "RBAC: access denied" in await r.text()

    await apply(http, demo, "authorization-policy-productpage-viewer.yaml", every=True)
    denied = await page(http, demo)
    assert denied["details"]["status"] == 403
    assert "RBAC: access denied" in denied["details"]["error"]
    assert denied["reviews"]["status"] == 403

    await apply(http, demo, "authorization-policy-viewers.yaml", every=True)
    for _ in range(4):
        body = await page(http, demo)
        assert served(body)[0] == "details-v1"
        assert served(body)[1].startswith("reviews-v")
        for review in body["reviews"]["reviews"]:
            assert "error" not in review.get("rating", {})  # reviews -> ratings allowed by its identity


def demo_token(*args: str) -> str:
    """A token from the example's own minting script, run as a user would run it."""
    script = BOOKINFO / "jwt" / "make_token.py"
    done = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.mark.slow
async def test_mesh_up_demo_istio_jwt_task(demo: Demo, http: aiohttp.ClientSession) -> None:
    """examples/bookinfo's RequestAuthentication and the policies requiring a token (and a group claim)."""

    async def status(token: str | None) -> tuple[int, str]:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        async with http.get(demo.productpage, params={"format": "json"}, headers=headers) as r:
            return r.status, await r.text()

    await apply(http, demo, "request-authentication-productpage.yaml")
    assert (await status(None))[0] == 200  # no token: still allowed
    assert (await status(demo_token()))[0] == 200
    assert await status(demo_token("--expires", "-3600")) == (401, "Jwt is expired\n")
    assert (await status("not.a.token"))[0] == 401

    await apply(http, demo, "authorization-policy-require-jwt.yaml")
    code, text = await status(None)
    assert code == 403
    assert "RBAC: access denied" in text
    assert (await status(demo_token()))[0] == 200

    await apply(http, demo, "authorization-policy-require-jwt-group.yaml")
    assert (await status(demo_token()))[0] == 403
    assert (await status(demo_token("--groups", "group2,group1")))[0] == 200


@pytest.mark.slow
async def test_mesh_up_demo_rate_limits(demo: Demo, http: aiohttp.ClientSession) -> None:
    """examples/bookinfo's RateLimitPolicy: 5 requests per user per 10 s at productpage, then 429."""
    await apply(http, demo, "ratelimit-productpage.yaml")
    codes = []
    for _ in range(6):
        async with http.get(demo.productpage, headers={"end-user": "jason"}) as r:
            codes.append(r.status)
            retry_after = r.headers.get("retry-after")
    assert codes == [200] * 5 + [429]
    assert retry_after is not None
    assert 1 <= int(retry_after) <= 10
    async with http.get(demo.productpage, headers={"end-user": "kim"}) as r:
        assert r.status == 200  # another user, another bucket
