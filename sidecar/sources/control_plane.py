"""Snapshots from the control plane (``MESH_CONTROL_ADDR``): the sidecar side of the sync protocol.

1. **Serve from disk first.** The last snapshot this sidecar applied is kept in
   ``state_dir/snapshot.json`` (a valid ``--config`` file), the hosts its app asked for in
   ``hosts.json``; at start the snapshot is validated and offered before anything else, so a
   sidecar restarted while the control plane is down serves its last good config.
2. **Register** with ``PUT /v1/mesh/sidecars/{id}``: service, namespace, labels, the bootstrap
   snapshot (its listeners and local clusters, from ``defaults.standard_snapshot``) and the
   hosts its app has asked for so far.
3. **Long-poll** ``GET /v1/mesh/sync/{id}?version=<held>&wait=30s``: the answer comes when the
   control plane has a snapshot different from the one held (200), else after ``wait`` (304).
   ``held`` is the last version *offered*, accepted or not, so a rejected snapshot is not sent
   again until something changes.
4. **Validate, swap, report**: the snapshot is parsed with ``mesh.model.parse`` (a ``ConfigError``
   names the field) and offered to ``apply``; the outcome rides on the next long poll, as in
   Envoy's xDS: ``&ack=<version>``, or ``&nack=<version>&error=<reason>`` (the old snapshot
   stays). Accepted snapshots are written to disk (write, fsync, rename) before that poll.

**Credentials.** With the control plane's token (``MESH_CONTROL_TOKEN`` or
``MESH_CONTROL_TOKEN_FILE``) every request carries ``Authorization: Bearer``; registration answers
a secret for this sidecar (kept in memory only), sent as ``X-Mesh-Sidecar-Secret`` with every later
request about it. A 401/403 on sync means the registration is no longer ours: register again.
Neither ever appears in what this source logs.

A host the snapshot does not route (``demand``) is reported with
``POST /v1/mesh/sidecars/{id}/demand``; the proxy then waits (``demand_timeout``) for the
snapshot that routes it. Unreachable control plane, 5xx or a timeout: retry with exponential
backoff and full jitter (``backoff_base`` doubling to ``backoff_cap``), serving the current
snapshot meanwhile; a 404 means the control plane forgot us (a restart): register again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import socket
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp

from discovery.watch import TokenBucket
from mesh.control.tokens import auth_headers, redact, token_from_env
from mesh.model.dump import snapshot_to_dict
from mesh.model.hosts import DEFAULT_NAMESPACE, split_host_port
from mesh.model.parse import ConfigError, parse_snapshot
from mesh.model.routing import select_virtual_host
from mesh.model.snapshot import Snapshot
from sidecar.security.agent import CertificateAgent
from sidecar.security.wiring import SidecarSecurity
from sidecar.sources.base import Apply, SourceStats, offer, reject
from sidecar.sources.ca_client import ControlPlaneSigner
from sidecar.sources.defaults import OUTBOUND, SidecarSettings, standard_snapshot

log = logging.getLogger(__name__)

DEFAULT_CONTROL_ADDR = "http://127.0.0.1:15010"
SNAPSHOT_FILE = "snapshot.json"
HOSTS_FILE = "hosts.json"  # the hosts the app asked for, re-announced after a restart
MAX_DEMANDED = 1000
MAX_ERROR_CHARS = 2000  # a NACK's reason travels in the poll's query string


class ControlPlaneError(Exception):
    """The control plane answered something unusable (retried with backoff)."""


def default_sidecar_id(service: str) -> str:
    return f"{service}~{socket.gethostname()}~{os.getpid()}"


def backoff_delay(failures: int, base: float, cap: float, rand: Callable[[], float]) -> float:
    """Exponential backoff with full jitter (AWS's "full jitter": uniform in [0, min(cap, base·2^n)))."""
    return rand() * min(cap, base * 2.0 ** min(failures - 1, 32))


class ControlPlaneSource:
    """See the module doc. ``address`` defaults to ``MESH_CONTROL_ADDR`` (``http://127.0.0.1:15010``)."""

    name = "control-plane"

    def __init__(
        self,
        settings: SidecarSettings,
        address: str | None = None,
        *,
        sidecar_id: str | None = None,
        namespace: str = DEFAULT_NAMESPACE,
        labels: Mapping[str, str] | None = None,
        state_dir: Path | str | None = None,
        wait: float = 30.0,
        demand_timeout: float = 2.0,
        request_timeout: float = 10.0,
        backoff_base: float = 0.2,
        backoff_cap: float = 10.0,
        rand: Callable[[], float] = random.random,
        token: str | None = None,
        admin: str | Callable[[], str] = "",
        gateway_bind: str = "",
    ) -> None:
        """``token=None``: ``MESH_CONTROL_TOKEN_FILE`` or ``MESH_CONTROL_TOKEN`` ("" when neither is set).
        ``admin``: this sidecar's admin address ``host:port`` (or a function giving it once the admin port is
        bound), sent with the registration so the control plane can scrape ``/metrics``; "" sends none.
        ``gateway_bind``: register as a gateway proxy listening on that address (``mesh gateway``): no
        standard listeners; the Gateway resources selecting ``labels`` give the listeners."""
        self.settings = settings.validate()
        if not settings.service:
            raise ValueError("--service: a sidecar needs its service name to register with the control plane")
        self.address = (address or os.environ.get("MESH_CONTROL_ADDR") or DEFAULT_CONTROL_ADDR).rstrip("/")
        if "://" not in self.address:
            self.address = "http://" + self.address
        self.sidecar_id = sidecar_id or default_sidecar_id(settings.service)
        self.namespace = namespace
        self.labels = dict(labels) if labels is not None else {"app": settings.service}
        self.gateway_bind = gateway_bind
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.wait = wait
        self.demand_timeout = demand_timeout
        self.request_timeout = request_timeout
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self._rand = rand
        self.stats = SourceStats()
        self.connected = False  # the last exchange with the control plane succeeded
        self.failures = 0
        self._apply: Apply | None = None
        self._session: aiohttp.ClientSession | None = None
        self._held = ""  # the last version offered to apply (accepted or not)
        self._applied: Snapshot | None = None
        self._applied_version = ""
        self._pending_ack: dict[str, Any] | None = None
        self._registered = False
        self._demanded: OrderedDict[str, None] = OrderedDict()
        self._changed = asyncio.Event()
        self._token = token_from_env() if token is None else token
        self._secret = ""  # this sidecar's secret, from its registration
        self._admin = admin
        self._registered_once = asyncio.Event()
        self._certificates: CertificateAgent | None = None  # set by ``bind_credentials``

    def bind_credentials(self, security: SidecarSecurity) -> None:
        """Get (and renew) this sidecar's workload certificate from the control plane's CA while running."""
        signer = ControlPlaneSigner(self._request, self.sidecar_id, self._registered_once.wait)
        self._certificates = CertificateAgent(
            signer, self.namespace, self.settings.service, security.tls, security.stats
        )

    @property
    def applied_version(self) -> str:
        return self._applied_version

    # === the loop ===

    async def run(self, apply: Apply) -> None:
        self._apply = apply
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.request_timeout)
        self._session = aiohttp.ClientSession(timeout=timeout, headers={"User-Agent": "mesh-sidecar"})
        bucket = TokenBucket(rate=20.0, burst=5, clock=time.monotonic)
        agent = self._certificates
        certificates = asyncio.get_running_loop().create_task(agent.run()) if agent is not None else None
        try:
            await self._serve_from_disk()
            while True:
                delay = bucket.reserve()
                if delay > 0:
                    await asyncio.sleep(delay)
                try:
                    await self._exchange()
                except (aiohttp.ClientError, TimeoutError, ControlPlaneError) as exc:
                    await self._back_off(exc)
        finally:
            self._apply = None
            if certificates is not None:
                certificates.cancel()
                await asyncio.gather(certificates, return_exceptions=True)
            await self._goodbye()

    async def _exchange(self) -> None:
        """Register if needed, then one long poll, carrying the ACK or NACK of the last snapshot."""
        if not self._registered:
            await self._register()
        params = {"version": self._held, "wait": f"{self.wait:g}s"}
        report = self._pending_ack
        if report is not None:
            if report["error"] is None:
                params["ack"] = report["version"]
            else:
                params["nack"] = report["version"]
                params["error"] = str(report["error"])[:MAX_ERROR_CHARS]
        status, body = await self._request(
            "GET", f"/v1/mesh/sync/{self.sidecar_id}", params=params, timeout=self.wait + self.request_timeout
        )
        if status != 404 and self._pending_ack is report:
            self._pending_ack = None  # the control plane has it (a 404 means it forgot us: say it again)
        if status == 304:
            self._recovered()
            return
        if status == 404:
            self._registered = False
            return
        if status in (401, 403):  # our secret no longer opens this registration (or the token changed)
            self._registered = False
            raise ControlPlaneError(f"sync answered {status}: {_error_text(body)}")
        if status != 200:
            raise ControlPlaneError(f"sync answered {status}: {_error_text(body)}")
        self._recovered()
        await self._receive(body)

    async def _receive(self, body: bytes) -> None:
        try:
            message = json.loads(body)
            version = str(message["version"])
            data = message["snapshot"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ControlPlaneError(f"sync answer is not {{version, snapshot}}: {exc}") from exc
        self._held = version
        try:
            snapshot = parse_snapshot(data, version=version)
        except ConfigError as exc:
            reject(self.stats, log, version, str(exc))
            self._pending_ack = {"version": version, "error": f"invalid snapshot: {exc}"}
            return
        if await self._offer(snapshot):
            await self._persist(data)
            self._pending_ack = {"version": version, "error": None}
        else:
            self._pending_ack = {"version": version, "error": self.stats.last_error or "rejected"}

    async def _offer(self, snapshot: Snapshot) -> bool:
        apply = self._apply
        if apply is None:
            return False
        accepted = offer(apply, snapshot, self.stats, log)
        if accepted:
            self._applied = snapshot
            self._applied_version = snapshot.version
            self._changed.set()
            self._changed = asyncio.Event()
        return accepted

    # === requests ===

    async def _register(self) -> None:
        bootstrap: dict[str, Any] = {}
        if not self.gateway_bind:
            bootstrap = snapshot_to_dict(standard_snapshot(self.settings, "bootstrap", (), {}, {}))
            bootstrap.pop("version", None)
        body: dict[str, Any] = {
            "service": self.settings.service,
            "namespace": self.namespace,
            "labels": self.labels,
            "bootstrap": bootstrap,
            "demanded": list(self._demanded),
        }
        admin = self._admin() if callable(self._admin) else self._admin
        if admin:
            body["admin"] = admin
        if self.gateway_bind:
            body["gateway"] = {"bind": self.gateway_bind}
        status, answer = await self._request("PUT", f"/v1/mesh/sidecars/{self.sidecar_id}", json_body=body)
        if status != 200:
            raise ControlPlaneError(f"registration answered {status}: {_error_text(answer)}")
        try:
            secret = json.loads(answer).get("secret")
        except (ValueError, AttributeError) as exc:
            raise ControlPlaneError(f"registration answer is not a JSON object: {exc}") from exc
        if isinstance(secret, str) and secret:
            self._secret = secret  # absent when the control plane kept the one we showed
        self._registered = True
        self._registered_once.set()
        self._recovered()
        log.info("registered with the control plane", extra={"control_plane": self.address, "sidecar": self.sidecar_id})
        if self._applied_version and self._pending_ack is None:
            self._pending_ack = {"version": self._applied_version, "error": None}  # what we serve (from disk)

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        timeout: float | None = None,
    ) -> tuple[int, bytes]:
        session = self._session
        if session is None:
            raise ControlPlaneError("the source is not running")
        limit = aiohttp.ClientTimeout(total=timeout or self.request_timeout, sock_connect=self.request_timeout)
        async with session.request(
            method,
            self.address + path,
            params=params,
            json=json_body,
            timeout=limit,
            headers=auth_headers(self._token, self._secret),
        ) as response:
            return response.status, await response.read()

    async def _goodbye(self) -> None:
        """Tell the control plane we are gone (best effort), then close the session."""
        session, self._session = self._session, None
        if session is None:
            return
        if self._registered:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.delete(
                    f"{self.address}/v1/mesh/sidecars/{self.sidecar_id}",
                    timeout=aiohttp.ClientTimeout(total=1.0),
                    headers=auth_headers(self._token, self._secret),
                ):
                    pass
        await session.close()

    # === failures ===

    async def _back_off(self, exc: Exception) -> None:
        self.failures += 1
        self.connected = False
        self._registered = self._registered and not isinstance(exc, aiohttp.ClientConnectionError)
        delay = backoff_delay(self.failures, self.backoff_base, self.backoff_cap, self._rand)
        level = logging.WARNING if self.failures == 1 else logging.DEBUG
        log.log(
            level,
            "control plane %s: %s (failure %d, retrying in %.2fs; serving %s)",
            self.address,
            redact(str(exc) or type(exc).__name__, self._token, self._secret),
            self.failures,
            delay,
            self._applied_version or "no config",
        )
        await asyncio.sleep(delay)

    def _recovered(self) -> None:
        if self.failures:
            log.info("control plane %s reachable again after %d failures", self.address, self.failures)
        self.failures = 0
        self.connected = True

    # === persistence ===

    def _snapshot_path(self) -> Path | None:
        return None if self.state_dir is None else self.state_dir / SNAPSHOT_FILE

    async def _serve_from_disk(self) -> None:
        path = self._snapshot_path()
        if path is None:
            return
        await self._load_hosts(path.with_name(HOSTS_FILE))
        try:
            raw = await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            return
        except OSError as exc:
            log.error("cannot read the saved snapshot %s: %s", path, exc)
            return
        try:
            data = json.loads(raw)
            snapshot = parse_snapshot(data)
        except (ValueError, ConfigError) as exc:
            reject(self.stats, log, "", f"saved snapshot {path}: {exc}")
            return
        log.info("serving the saved snapshot %s until the control plane answers", snapshot.version)
        if await self._offer(snapshot):
            self._held = snapshot.version

    async def _persist(self, data: Any) -> None:
        path = self._snapshot_path()
        if path is None:
            return
        hosts = json.dumps(list(self._demanded)).encode()
        try:
            await asyncio.to_thread(_write_atomically, path, json.dumps(data).encode())
            await asyncio.to_thread(_write_atomically, path.with_name(HOSTS_FILE), hosts)
        except OSError as exc:  # the snapshot is applied; only the restart copy is stale
            log.error("cannot save the snapshot to %s: %s", path, exc)

    async def _load_hosts(self, path: Path) -> None:
        try:
            hosts = json.loads(await asyncio.to_thread(path.read_bytes))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("cannot read the saved hosts %s: %s", path, exc)
            return
        if isinstance(hosts, list):
            for host in hosts[-MAX_DEMANDED:]:
                if isinstance(host, str) and host:
                    self._demanded[host] = None

    # === on-demand hosts ===

    async def demand(self, host: str) -> bool:
        """Ask the control plane for a host the snapshot lacks; True once the applied snapshot routes it."""
        if self._routes(host):
            return True
        name, _ = split_host_port(host)
        if not name:
            return False
        self._demanded[name] = None
        self._demanded.move_to_end(name)
        while len(self._demanded) > MAX_DEMANDED:
            self._demanded.popitem(last=False)
        if self._session is None or not self._registered:
            return False
        try:
            status, body = await self._request(
                "POST",
                f"/v1/mesh/sidecars/{self.sidecar_id}/demand",
                json_body={"host": host},
                timeout=self.demand_timeout + self.request_timeout,
            )
            answer = json.loads(body) if status == 200 else {}
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return False
        if not answer.get("routed"):
            return False
        wanted = str(answer.get("version", ""))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._until_applied(wanted, host), self.demand_timeout)
        return self._routes(host)

    async def _until_applied(self, version: str, host: str) -> None:
        while self._applied_version != version and not self._routes(host):
            await self._changed.wait()

    def _routes(self, host: str) -> bool:
        snapshot = self._applied
        if snapshot is None:
            return False
        table = snapshot.route_tables.get(OUTBOUND)
        return table is not None and select_virtual_host(table, host) is not None


def advertised_admin(admin_addr: str, bound_port: int = 0) -> str:
    """The admin address to register (``host:port``), from ``--admin-addr`` and the port actually bound.

    "" for a Unix socket or an unknown port (``:0`` not bound yet); an unspecified host (``0.0.0.0``,
    ``::``, which ``--admin-allow-remote`` allows) is advertised as this machine's host name.
    """
    if admin_addr.startswith("unix:"):
        return ""
    host, _, port = admin_addr.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    number = bound_port or (int(port) if port.isdigit() else 0)
    if not number:
        return ""
    if host in ("0.0.0.0", "::"):
        host = socket.gethostname()
    return f"[{host}]:{number}" if ":" in host else f"{host}:{number}"


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _error_text(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")[:200]
    return str(data.get("error", data)) if isinstance(data, dict) else str(data)


__all__ = [
    "DEFAULT_CONTROL_ADDR",
    "HOSTS_FILE",
    "SNAPSHOT_FILE",
    "ControlPlaneError",
    "ControlPlaneSource",
    "advertised_admin",
    "backoff_delay",
]
