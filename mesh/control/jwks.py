"""The JSON Web Key Sets ``RequestAuthentication`` rules name, fetched and kept fresh by the control plane.

Istio's istiod does this so proxies never fetch keys: each rule's ``jwksUri`` (or, without one,
the ``jwks_uri`` of the issuer's OpenID discovery document) is fetched, checked, and sent to the
sidecars inline. Here:

- ``ensure`` runs before an apply: every key source of the applied rules that is not known yet
  is fetched now, and a failure (unreachable, not a key set, a key that cannot verify) refuses
  the apply with the field and the reason, so a typo never reaches the sidecars.
- ``track`` follows the rules in force: each key source is refreshed every ``refresh_s``
  (Istio's default: 20 minutes), keeping the last good key set when a refresh fails (retried
  after ``retry_s``); sources no rule names any more are dropped. Rules loaded at start are
  fetched in the background: until the first success their tokens are rejected by the sidecars.
- ``on_change`` is called when a key set changes, so the sidecars get new snapshots (a rotated
  key reaches them within one refresh).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType

import aiohttp

from mesh.model.reader import ConfigError
from mesh.rules.documents import RuleError
from mesh.rules.request_authentication import OPENID_SOURCE, RequestAuthenticationSpec, check_jwks, check_url
from mesh.rules.resource import Resource

log = logging.getLogger("mesh.control.jwks")

DEFAULT_REFRESH_S = 20 * 60.0
DEFAULT_RETRY_S = 30.0
MAX_BYTES = 1 << 20  # a key set is a few KB; refuse to buffer anything near this


class KeySetError(Exception):
    """A key source could not be turned into a usable key set (the message says why)."""


class KeySetCache:
    def __init__(
        self,
        on_change: Callable[[], None],
        *,
        refresh_s: float = DEFAULT_REFRESH_S,
        retry_s: float = DEFAULT_RETRY_S,
    ) -> None:
        self._on_change = on_change
        self.refresh_s = refresh_s
        self.retry_s = retry_s
        self._sets: dict[str, str] = {}
        self.current: Mapping[str, str] = MappingProxyType({})
        self._timeouts: dict[str, float] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._session: aiohttp.ClientSession | None = None

    # === apply time ===

    async def ensure(self, resources: Iterable[Resource]) -> None:
        """Fetch the key sources of ``resources`` not known yet; ``RuleError`` for the first that fails."""
        wanted: dict[str, tuple[Resource, int, float]] = {}
        for resource in resources:
            spec = resource.spec
            if not isinstance(spec, RequestAuthenticationSpec):
                continue
            for i, rule in enumerate(spec.jwt_rules):
                source = rule.key_source
                if source and source not in self._sets and source not in wanted:
                    wanted[source] = (resource, i, rule.timeout_s)
        if not wanted:
            return
        results = await asyncio.gather(
            *(self._fetch(source, timeout) for source, (_, _, timeout) in wanted.items()), return_exceptions=True
        )
        for (source, (resource, i, _)), result in zip(wanted.items(), results, strict=True):
            if isinstance(result, BaseException):
                field = "jwksUri" if not source.startswith(OPENID_SOURCE) else "issuer"
                raise RuleError(f"spec.jwtRules[{i}].{field}", f"{result}", resource=str(resource.key))
        for source, result in zip(wanted, results, strict=True):
            self._store(source, str(result))

    # === in force ===

    def track(self, resources: Iterable[Resource]) -> None:
        """Refresh the key sources the rules in force name; forget the others."""
        sources: dict[str, float] = {}
        for resource in resources:
            if isinstance(resource.spec, RequestAuthenticationSpec):
                for rule in resource.spec.jwt_rules:
                    if rule.key_source:
                        sources.setdefault(rule.key_source, rule.timeout_s)
        self._timeouts = sources
        for source in list(self._tasks):
            if source not in sources:
                self._tasks.pop(source).cancel()
        dropped = [source for source in self._sets if source not in sources]
        for source in dropped:
            del self._sets[source]
        if dropped:
            self.current = MappingProxyType(dict(self._sets))
        loop = asyncio.get_running_loop()
        for source in sources:
            if source not in self._tasks:
                self._tasks[source] = loop.create_task(self._follow(source), name=f"jwks {source}")

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _follow(self, source: str) -> None:
        delay = self.refresh_s if source in self._sets else 0.0
        while True:
            await asyncio.sleep(delay)
            try:
                text = await self._fetch(source, self._timeouts.get(source, 5.0))
            except KeySetError as exc:
                log.warning(
                    "key set refresh failed; keeping the last good one", extra={"source": source, "error": str(exc)}
                )
                delay = self.retry_s
                continue
            self._store(source, text)
            delay = self.refresh_s

    def _store(self, source: str, text: str) -> None:
        if self._sets.get(source) == text:
            return
        self._sets[source] = text
        self.current = MappingProxyType(dict(self._sets))
        self._on_change()

    # === fetching ===

    async def _fetch(self, source: str, timeout: float) -> str:
        if source.startswith(OPENID_SOURCE):
            uri = await self._discover(source.removeprefix(OPENID_SOURCE), timeout)
        else:
            uri = source
        text = await self._get(uri, timeout)
        try:
            check_jwks(text, "")
        except ConfigError as exc:
            where = f"{exc.path.lstrip('.')}: " if exc.path else ""
            raise KeySetError(f"{uri} did not answer a usable key set: {where}{exc.message}") from exc
        return json.dumps(json.loads(text), separators=(",", ":"), sort_keys=True)

    async def _discover(self, issuer: str, timeout: float) -> str:
        """The ``jwks_uri`` of the issuer's OpenID Connect discovery document."""
        try:
            check_url(issuer, "issuer")
        except ConfigError as exc:
            raise KeySetError(
                f"no jwks or jwksUri, and the issuer is not a URL for OpenID discovery: {exc.message}"
            ) from exc
        location = issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            document = json.loads(await self._get(location, timeout))
        except ValueError as exc:
            raise KeySetError(f"{location} is not JSON: {exc}") from exc
        uri = document.get("jwks_uri") if isinstance(document, dict) else None
        if not isinstance(uri, str):
            raise KeySetError(f"{location} has no jwks_uri")
        return uri

    async def _get(self, url: str, timeout: float) -> str:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            async with self._session.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as response:
                if response.status != 200:
                    raise KeySetError(f"fetching {url} answered HTTP {response.status}")
                body = await response.content.read(MAX_BYTES + 1)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise KeySetError(f"fetching {url} failed: {exc or type(exc).__name__}") from exc
        if len(body) > MAX_BYTES:
            raise KeySetError(f"{url} answered more than {MAX_BYTES} bytes")
        with contextlib.suppress(UnicodeDecodeError):
            return body.decode()
        raise KeySetError(f"{url} answered something that is not UTF-8 text")


__all__ = ["DEFAULT_REFRESH_S", "KeySetCache", "KeySetError"]
