"""The one async client of the Consul HTTP API, used by every component.

It speaks only the documented wire protocol (``/v1`` paths, PascalCase JSON, ``X-Consul-*``
headers), so it works unchanged against real Consul and against our embedded registry.
Blocking reads return ``QueryResult``; writes return what Consul returns (``bool`` for
catalog and KV writes, nothing for agent writes). Every failure is a ``RegistryError``
subclass, mapped in ``_send`` only.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, Literal, Self, TypeVar
from urllib.parse import quote

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from discovery.client_config import ClientConfig, ClientConfigError
from discovery.client_models import (
    AgentService,
    BadRequest,
    CatalogNode,
    CatalogNodeServices,
    CatalogRegistration,
    CatalogServiceEntry,
    CheckRegistration,
    HealthCheck,
    HealthServiceEntry,
    KVPair,
    NotFound,
    PermissionDenied,
    QueryResult,
    RegistryError,
    RegistryUnavailable,
    ServiceRegistration,
)
from discovery.durations import format_duration
from discovery.watch import Watch

T = TypeVar("T")

Consistency = Literal["stale", "consistent"]
Params = list[tuple[str, str]]

DEFAULT_BLOCKING_WAIT = 300.0  # what Consul waits when ?index comes without ?wait
MAX_BLOCKING_WAIT = 600.0  # Consul caps ?wait here
_STATUS_ERRORS: dict[int, type[RegistryError]] = {400: BadRequest, 403: PermissionDenied, 404: NotFound}


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes


class RegistryClient:
    """Async Consul API client. Use ``async with RegistryClient() as c:`` or ``await c.close()``.

    ``config`` is a ``ClientConfig``, an address string (``"http://127.0.0.1:8500"``), or
    ``None`` for the ``CONSUL_*`` environment. ``token`` overrides the configured token.
    ``request_timeout`` bounds non-blocking calls and is the margin added to blocking ones.
    Each running watch holds one of the ``max_connections`` pooled connections.
    The HTTP session is created on first use, so construct the client anywhere but use it
    from a single event loop.
    """

    def __init__(
        self,
        config: ClientConfig | str | None = None,
        *,
        token: str | None = None,
        request_timeout: float = 10.0,
        max_connections: int = 100,
    ) -> None:
        if config is None:
            config = ClientConfig.from_env()
        elif isinstance(config, str):
            config = ClientConfig.from_address(config)
        if token is not None:
            config = replace(config, token=token)
        if config.unix_socket is not None and config.scheme == "https":
            raise ClientConfigError("TLS over a unix socket is not supported")
        self.config = config
        self._request_timeout = request_timeout
        self._max_connections = max_connections
        # Built here, not lazily, so unreadable TLS files fail at construction.
        self._ssl = config.ssl_context() if config.scheme == "https" else None
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session; a later call opens a new one."""
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    # === agent ===

    async def register_service(self, service: ServiceRegistration, *, replace_existing_checks: bool = False) -> None:
        """Register (or replace, same ID) a service and its checks on the agent."""
        params = [("replace-existing-checks", "true")] if replace_existing_checks else []
        await self._send("PUT", "/v1/agent/service/register", params=params, json_body=service.to_json())

    async def deregister_service(self, service_id: str) -> None:
        """Remove a service and its checks. Current Consul raises ``NotFound`` for an unknown ID."""
        await self._send("PUT", f"/v1/agent/service/deregister/{_seg(service_id)}")

    async def agent_services(self) -> dict[str, AgentService]:
        data = await self._get_json("/v1/agent/services")
        return _parse(lambda: {sid: AgentService.from_json(s) for sid, s in data.items()}, "/v1/agent/services")

    async def agent_service(self, service_id: str) -> AgentService | None:
        """One local service, or ``None`` if the agent does not know the ID."""
        path = f"/v1/agent/service/{_seg(service_id)}"
        try:
            data = await self._get_json(path)
        except NotFound:
            return None
        return _parse(lambda: AgentService.from_json(data), path)

    async def agent_checks(self) -> dict[str, HealthCheck]:
        data = await self._get_json("/v1/agent/checks")
        return _parse(lambda: {cid: HealthCheck.from_json(c) for cid, c in data.items()}, "/v1/agent/checks")

    async def register_check(self, check: CheckRegistration) -> None:
        await self._send("PUT", "/v1/agent/check/register", json_body=check.to_json())

    async def deregister_check(self, check_id: str) -> None:
        await self._send("PUT", f"/v1/agent/check/deregister/{_seg(check_id)}")

    async def ttl_pass(self, check_id: str, note: str = "") -> None:
        await self._ttl("pass", check_id, note)

    async def ttl_warn(self, check_id: str, note: str = "") -> None:
        await self._ttl("warn", check_id, note)

    async def ttl_fail(self, check_id: str, note: str = "") -> None:
        await self._ttl("fail", check_id, note)

    async def update_ttl(self, check_id: str, status: str, output: str = "") -> None:
        """Set a TTL check's status (passing, warning, critical) and output in one call."""
        body = {"Status": status, "Output": output}
        await self._send("PUT", f"/v1/agent/check/update/{_seg(check_id)}", json_body=body)

    async def agent_self(self) -> dict[str, Any]:
        """The agent's configuration and member info (``Config.NodeName``, ``Config.Datacenter`` ...)."""
        data = await self._get_json("/v1/agent/self")
        if not isinstance(data, dict):
            raise RegistryError(200, "expected a JSON object", "GET", "/v1/agent/self")
        return data

    # === catalog ===

    async def catalog_services(
        self, *, index: int | None = None, wait: float | None = None, consistency: Consistency | None = None
    ) -> QueryResult[dict[str, tuple[str, ...]]]:
        """Every service name with the union of its tags."""
        return await self._read(
            "/v1/catalog/services",
            lambda d: {str(name): tuple(str(t) for t in tags or ()) for name, tags in d.items()},
            index=index,
            wait=wait,
            consistency=consistency,
        )

    async def catalog_service(
        self,
        name: str,
        tags: Sequence[str] = (),
        *,
        index: int | None = None,
        wait: float | None = None,
        consistency: Consistency | None = None,
    ) -> QueryResult[list[CatalogServiceEntry]]:
        """All instances of a service, healthy or not; ``tags`` must all match (case-insensitive)."""
        return await self._read(
            f"/v1/catalog/service/{_seg(name)}",
            lambda d: [CatalogServiceEntry.from_json(e) for e in d],
            params=[("tag", t) for t in tags],
            index=index,
            wait=wait,
            consistency=consistency,
        )

    async def catalog_nodes(
        self, *, index: int | None = None, wait: float | None = None, consistency: Consistency | None = None
    ) -> QueryResult[list[CatalogNode]]:
        return await self._read(
            "/v1/catalog/nodes",
            lambda d: [CatalogNode.from_json(n) for n in d],
            index=index,
            wait=wait,
            consistency=consistency,
        )

    async def catalog_node(
        self,
        node: str,
        *,
        index: int | None = None,
        wait: float | None = None,
        consistency: Consistency | None = None,
    ) -> QueryResult[CatalogNodeServices | None]:
        """A node and its services; ``None`` for an unknown node (Consul answers ``null``)."""
        return await self._read(
            f"/v1/catalog/node/{_seg(node)}",
            lambda d: None if d is None else CatalogNodeServices.from_json(d),
            index=index,
            wait=wait,
            consistency=consistency,
            missing=lambda: None,
        )

    async def catalog_register(self, registration: CatalogRegistration) -> bool:
        return await self._write_bool("PUT", "/v1/catalog/register", json_body=registration.to_json())

    async def catalog_deregister(
        self, node: str, *, service_id: str | None = None, check_id: str | None = None
    ) -> bool:
        """Remove a service, a check, or (neither given) the node with everything on it."""
        body = {"Node": node}
        if service_id is not None:
            body["ServiceID"] = service_id
        if check_id is not None:
            body["CheckID"] = check_id
        return await self._write_bool("PUT", "/v1/catalog/deregister", json_body=body)

    # === health ===

    async def health_service(
        self,
        name: str,
        passing: bool = False,
        tags: Sequence[str] = (),
        *,
        index: int | None = None,
        wait: float | None = None,
        consistency: Consistency | None = None,
    ) -> QueryResult[list[HealthServiceEntry]]:
        """Instances with their node and checks; ``passing`` keeps those whose checks all pass."""
        params = [("tag", t) for t in tags]
        if passing:
            params.append(("passing", "1"))
        return await self._read(
            f"/v1/health/service/{_seg(name)}",
            lambda d: [HealthServiceEntry.from_json(e) for e in d],
            params=params,
            index=index,
            wait=wait,
            consistency=consistency,
        )

    async def health_checks(
        self,
        service: str,
        *,
        index: int | None = None,
        wait: float | None = None,
        consistency: Consistency | None = None,
    ) -> QueryResult[list[HealthCheck]]:
        return await self._read_checks(f"/v1/health/checks/{_seg(service)}", index, wait, consistency)

    async def health_state(
        self,
        state: str,
        *,
        index: int | None = None,
        wait: float | None = None,
        consistency: Consistency | None = None,
    ) -> QueryResult[list[HealthCheck]]:
        """Checks in ``state``: any, passing, warning or critical."""
        return await self._read_checks(f"/v1/health/state/{_seg(state)}", index, wait, consistency)

    async def health_node(
        self,
        node: str,
        *,
        index: int | None = None,
        wait: float | None = None,
        consistency: Consistency | None = None,
    ) -> QueryResult[list[HealthCheck]]:
        return await self._read_checks(f"/v1/health/node/{_seg(node)}", index, wait, consistency)

    # === kv ===

    async def kv_get(
        self,
        key: str,
        *,
        index: int | None = None,
        wait: float | None = None,
        consistency: Consistency | None = None,
    ) -> QueryResult[KVPair | None]:
        """One key; ``value`` is ``None`` when absent, and the index is still valid for blocking."""
        return await self._read(
            _kv_path(key),
            lambda d: KVPair.from_json(d[0]) if d else None,
            index=index,
            wait=wait,
            consistency=consistency,
            missing=lambda: None,
        )

    async def kv_list(
        self,
        prefix: str,
        *,
        index: int | None = None,
        wait: float | None = None,
        consistency: Consistency | None = None,
    ) -> QueryResult[list[KVPair]]:
        """Every entry under ``prefix`` (empty list when none)."""
        return await self._read(
            _kv_path(prefix),
            lambda d: [KVPair.from_json(p) for p in d],
            params=[("recurse", "")],
            index=index,
            wait=wait,
            consistency=consistency,
            missing=list,
        )

    async def kv_keys(
        self,
        prefix: str,
        separator: str | None = None,
        *,
        index: int | None = None,
        wait: float | None = None,
        consistency: Consistency | None = None,
    ) -> QueryResult[list[str]]:
        """Key names under ``prefix``; with ``separator`` ("/") deeper keys roll up to "dir/"."""
        params = [("keys", "")]
        if separator is not None:
            params.append(("separator", separator))
        return await self._read(
            _kv_path(prefix),
            lambda d: [str(k) for k in d],
            params=params,
            index=index,
            wait=wait,
            consistency=consistency,
            missing=list,
        )

    async def kv_put(self, key: str, value: bytes | str, *, flags: int | None = None, cas: int | None = None) -> bool:
        """Write a key. With ``cas`` (0: only if absent, N: only if ModifyIndex is N) ``False`` means
        the condition failed. Omitting ``flags`` resets them to 0, as in Consul."""
        params: Params = []
        if flags is not None:
            params.append(("flags", str(flags)))
        if cas is not None:
            params.append(("cas", str(cas)))
        data = value.encode() if isinstance(value, str) else value
        return await self._write_bool("PUT", _kv_path(key), params=params, data=data)

    async def kv_delete(self, key: str, *, recurse: bool = False, cas: int | None = None) -> bool:
        """Delete a key (or a prefix with ``recurse``); ``True`` even if absent, ``False`` on a CAS miss."""
        params: Params = []
        if recurse:
            params.append(("recurse", ""))
        if cas is not None:
            params.append(("cas", str(cas)))
        return await self._write_bool("DELETE", _kv_path(key), params=params)

    # === status ===

    async def leader(self) -> str:
        """The Raft leader's ``ip:port``, or ``""`` when there is none."""
        data = await self._get_json("/v1/status/leader")
        return _parse(lambda: _expect(data, str), "/v1/status/leader")

    async def peers(self) -> list[str]:
        data = await self._get_json("/v1/status/peers")
        return _parse(lambda: [str(p) for p in _expect(data, list)], "/v1/status/peers")

    # === watches ===

    def watch_health_service(
        self,
        name: str,
        *,
        passing: bool = True,
        tags: Sequence[str] = (),
        wait: float | None = None,
        consistency: Consistency | None = None,
        changes_only: bool = False,
    ) -> Watch[list[HealthServiceEntry]]:
        """``async for result in client.watch_health_service("web"):`` yields each new instance list."""

        async def fetch(index: int) -> QueryResult[list[HealthServiceEntry]]:
            return await self.health_service(name, passing, tags, index=index, wait=wait, consistency=consistency)

        return Watch(fetch, name=f"health/service/{name}", changes_only=changes_only)

    def watch_catalog_services(
        self,
        *,
        wait: float | None = None,
        consistency: Consistency | None = None,
        changes_only: bool = False,
    ) -> Watch[dict[str, tuple[str, ...]]]:
        """Follow the set of service names and their tags."""

        async def fetch(index: int) -> QueryResult[dict[str, tuple[str, ...]]]:
            return await self.catalog_services(index=index, wait=wait, consistency=consistency)

        return Watch(fetch, name="catalog/services", changes_only=changes_only)

    def watch_kv_prefix(
        self,
        prefix: str,
        *,
        wait: float | None = None,
        consistency: Consistency | None = None,
        changes_only: bool = False,
    ) -> Watch[list[KVPair]]:
        """Follow every entry under ``prefix``."""

        async def fetch(index: int) -> QueryResult[list[KVPair]]:
            return await self.kv_list(prefix, index=index, wait=wait, consistency=consistency)

        return Watch(fetch, name=f"kv/{prefix}", changes_only=changes_only)

    # === transport ===

    async def _ttl(self, verb: str, check_id: str, note: str) -> None:
        params = [("note", note)] if note else []
        await self._send("PUT", f"/v1/agent/check/{verb}/{_seg(check_id)}", params=params)

    async def _read_checks(
        self, path: str, index: int | None, wait: float | None, consistency: Consistency | None
    ) -> QueryResult[list[HealthCheck]]:
        return await self._read(
            path,
            lambda d: [HealthCheck.from_json(c) for c in d],
            index=index,
            wait=wait,
            consistency=consistency,
        )

    async def _read(
        self,
        path: str,
        parse: Callable[[Any], T],
        *,
        params: Params | None = None,
        index: int | None,
        wait: float | None,
        consistency: Consistency | None,
        missing: Callable[[], T] | None = None,
    ) -> QueryResult[T]:
        """A blocking-capable GET. ``missing`` makes a 404 a value (KV misses still carry an index)."""
        query = list(params or ())
        if index is not None:
            query.append(("index", str(index)))
        if wait is not None:
            query.append(("wait", format_duration(wait)))
        if consistency is not None:
            if consistency not in ("stale", "consistent"):
                raise ValueError(f"consistency must be 'stale' or 'consistent', not {consistency!r}")
            query.append((consistency, ""))
        reply = await self._send(
            "GET", path, params=query, total_s=self._timeout_for(index, wait), allow_404=missing is not None
        )
        if reply.status == 404 and missing is not None:
            value = missing()
        else:
            value = _parse(lambda: parse(_decode(reply, "GET", path)), path)
        return _query_result(reply, value, path)

    async def _get_json(self, path: str) -> Any:
        reply = await self._send("GET", path)
        return _decode(reply, "GET", path)

    async def _write_bool(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        json_body: Any = None,
        data: bytes | None = None,
    ) -> bool:
        reply = await self._send(method, path, params=params, json_body=json_body, data=data)
        result = _decode(reply, method, path)
        if not isinstance(result, bool):
            raise RegistryError(reply.status, f"expected true or false, got {result!r}", method, path)
        return result

    def _timeout_for(self, index: int | None, wait: float | None) -> float:
        """Outlast the server's hold: a blocking query may take ``wait`` plus up to wait/16 jitter."""
        if not index or index <= 0:
            return self._request_timeout
        held = min(DEFAULT_BLOCKING_WAIT if wait is None else wait, MAX_BLOCKING_WAIT)
        return held + held / 16 + self._request_timeout

    def _get_session(self) -> aiohttp.ClientSession:
        # Created on first use because aiohttp binds a session to the running loop.
        if self._session is None or self._session.closed:
            connector: aiohttp.BaseConnector
            if self.config.unix_socket is not None:
                connector = aiohttp.UnixConnector(path=self.config.unix_socket, limit=self._max_connections)
            else:
                connector = aiohttp.TCPConnector(
                    ssl=self._ssl if self._ssl is not None else True, limit=self._max_connections
                )
            headers = {"User-Agent": "pymesh-registry-client"}
            if self.config.token:
                headers["X-Consul-Token"] = self.config.token
            self._session = aiohttp.ClientSession(connector=connector, headers=headers)
        return self._session

    async def _send(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        json_body: Any = None,
        data: bytes | None = None,
        total_s: float | None = None,
        allow_404: bool = False,
    ) -> _Reply:
        """Perform one request; the single place where transport and status errors are mapped."""
        url = URL(self.config.base_url + path, encoded=True)
        total = self._request_timeout if total_s is None else total_s
        client_timeout = aiohttp.ClientTimeout(total=total, connect=self._request_timeout)
        try:
            async with self._get_session().request(
                method, url, params=params or None, json=json_body, data=data, timeout=client_timeout
            ) as response:
                reply = _Reply(response.status, response.headers, await response.read())
        except TimeoutError as exc:
            raise RegistryUnavailable(0, f"timed out after {total:g}s", method, path) from exc
        except aiohttp.ClientError as exc:
            raise RegistryUnavailable(0, str(exc) or type(exc).__name__, method, path) from exc
        if reply.status < 300 or (reply.status == 404 and allow_404):
            return reply
        message = reply.body.decode("utf-8", "replace").strip() or f"HTTP {reply.status}"
        error = _STATUS_ERRORS.get(reply.status)
        if error is None:
            error = RegistryUnavailable if reply.status >= 500 else RegistryError
        raise error(reply.status, message, method, path)


def _seg(value: str) -> str:
    """One URL path segment: names and IDs may contain "/" or spaces (":" stays readable)."""
    return quote(value, safe=":")


def _kv_path(key: str) -> str:
    if key.startswith("/"):
        raise ValueError(f"KV keys have no leading '/': {key!r}")
    return "/v1/kv/" + quote(key, safe="/")


def _decode(reply: _Reply, method: str, path: str) -> Any:
    try:
        return json.loads(reply.body)
    except ValueError as exc:
        raise RegistryError(reply.status, f"response is not JSON: {exc}", method, path) from exc


def _parse(build: Callable[[], T], path: str) -> T:
    """Run a response parser, reporting a body of the wrong shape as a ``RegistryError``."""
    try:
        return build()
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise RegistryError(200, f"unexpected response shape: {exc!r}", "GET", path) from exc


def _expect(value: Any, kind: type[T]) -> T:
    if not isinstance(value, kind):
        raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")
    return value


def _query_result(reply: _Reply, value: T, path: str) -> QueryResult[T]:
    raw_index = reply.headers.get("X-Consul-Index", "")
    if not raw_index.isdigit():
        raise RegistryError(reply.status, f"bad or missing X-Consul-Index {raw_index!r}", "GET", path)
    last_contact = reply.headers.get("X-Consul-LastContact", "0")
    return QueryResult(
        index=int(raw_index),
        value=value,
        known_leader=reply.headers.get("X-Consul-KnownLeader", "").lower() == "true",
        last_contact_ms=int(last_contact) if last_contact.isdigit() else 0,
    )


__all__ = [
    "DEFAULT_BLOCKING_WAIT",
    "MAX_BLOCKING_WAIT",
    "BadRequest",
    "Consistency",
    "NotFound",
    "PermissionDenied",
    "RegistryClient",
    "RegistryError",
    "RegistryUnavailable",
]
