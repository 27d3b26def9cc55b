"""The rate limits of one snapshot, compiled for the inbound request path, over state that outlives snapshots.

``RateLimitState`` (one per sidecar) keeps each limit's buckets or shared windows, keyed by the
policy, the limit's name and its settings: a new snapshot with the same limit keeps counting
where the old one was; a changed limit starts afresh; a removed one is dropped (its sync task
stopped). ``InboundLimiter.check`` runs every limit whose ``match`` holds (Istio string matches
on the path, exact methods) and takes one token from each; the first that has none refuses the
request with the seconds until it has (``Retry-After``).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mesh.model.ratelimit import RateLimitEntry
from mesh.rules.ratelimit import Limit
from mesh.security.authz import string_matches
from sidecar.ratelimit.buckets import TokenBuckets
from sidecar.ratelimit.shared import KV_PREFIX, SharedWindows

if TYPE_CHECKING:
    from discovery.client import RegistryClient

Store = TokenBuckets | SharedWindows


@dataclass(frozen=True, slots=True)
class Refusal:
    policy: str  # "namespace/name"
    limit: str
    retry_after_s: float
    quota: int  # tokens (maxTokens) or requests per window
    window_s: float  # fillInterval or the shared unit
    shared: bool = False

    @property
    def message(self) -> str:
        """The 429's body: Envoy's local_ratelimit says ``local_rate_limited``; a shared budget ``rate_limited``."""
        return "rate_limited" if self.shared else "local_rate_limited"

    @property
    def retry_after(self) -> int:
        """Whole seconds, rounded up (``Retry-After`` has no fractions); at least 1."""
        return max(1, math.ceil(self.retry_after_s))

    def headers(self) -> tuple[tuple[str, str], ...]:
        """``Retry-After`` and the IETF draft's ``x-ratelimit-*`` fields (as Envoy writes them)."""
        seconds = str(self.retry_after)
        return (
            ("retry-after", seconds),
            ("x-ratelimit-limit", f"{self.quota}, {self.quota};w={max(1, round(self.window_s))}"),
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", seconds),
            ("x-mesh-response-flags", "RL"),
        )


@dataclass(frozen=True, slots=True)
class _Compiled:
    policy: str
    limit: Limit
    store: Store

    def applies(self, method: str, path: str) -> bool:
        match = self.limit.match
        if match.methods and method not in match.methods:
            return False
        return not match.paths or any(string_matches(pattern, path) for pattern in match.paths)

    def refusal(self, wait: float) -> Refusal:
        limit = self.limit
        if limit.token_bucket is not None:
            bucket = limit.token_bucket
            return Refusal(self.policy, limit.name, wait, bucket.max_tokens, bucket.fill_interval_s)
        assert limit.shared is not None
        return Refusal(self.policy, limit.name, wait, limit.shared.requests_per_unit, limit.shared.window_s, True)

    def key(self, header: Callable[[bytes], bytes | None], client_ip: str) -> str:
        kind = self.limit.key.kind
        if kind == "header":
            value = header(self.limit.key.header.encode("latin-1"))
            return "" if value is None else value.decode("latin-1")
        return client_ip if kind == "source_ip" else ""


class InboundLimiter:
    __slots__ = ("_limits",)

    def __init__(self, limits: Sequence[_Compiled]) -> None:
        self._limits = tuple(limits)

    def check(self, method: str, path: str, header: Callable[[bytes], bytes | None], client_ip: str) -> Refusal | None:
        for item in self._limits:
            if not item.applies(method, path):
                continue
            wait = item.store.take(item.key(header, client_ip))
            if wait > 0.0:
                return item.refusal(wait)
        return None


class RateLimitState:
    """Per sidecar: the stores of the limits in force and the registry client shared limits use."""

    def __init__(self, client: Callable[[], RegistryClient] | None = None) -> None:
        self._make_client = client
        self._client: RegistryClient | None = None
        self._stores: dict[tuple[str, Limit], Store] = {}

    def compile(self, entries: Sequence[RateLimitEntry]) -> InboundLimiter | None:
        """The limiter for ``entries`` (None without limits); stores of limits no longer in force are dropped."""
        compiled: list[_Compiled] = []
        wanted: dict[tuple[str, Limit], Store] = {}
        for entry in entries:
            for limit in entry.spec.limits:
                ident = (entry.id, limit)
                store = self._stores.get(ident) or wanted.get(ident) or self._new_store(entry, limit)
                wanted[ident] = store
                compiled.append(_Compiled(entry.id, limit, store))
        for ident, store in self._stores.items():
            if ident not in wanted and isinstance(store, SharedWindows):
                asyncio.get_running_loop().create_task(store.close())
        self._stores = wanted
        return InboundLimiter(compiled) if compiled else None

    def shared_down(self) -> dict[tuple[str, str], bool]:
        return {
            (policy, limit.name): store.down
            for (policy, limit), store in self._stores.items()
            if isinstance(store, SharedWindows)
        }

    async def close(self) -> None:
        for store in self._stores.values():
            if isinstance(store, SharedWindows):
                await store.close()
        if self._client is not None:
            await self._client.close()
            self._client = None

    def _new_store(self, entry: RateLimitEntry, limit: Limit) -> Store:
        if limit.token_bucket is not None:
            return TokenBuckets(limit.token_bucket)
        assert limit.shared is not None
        prefix = f"{KV_PREFIX}/{entry.namespace}/{entry.name}/{limit.name}"
        return SharedWindows(limit.shared, prefix, self.client)

    def client(self) -> RegistryClient:
        """The registry client of shared limits (``CONSUL_HTTP_ADDR``), made on first use: a sidecar
        without shared limits never loads the HTTP client library."""
        if self._client is None:
            if self._make_client is not None:
                self._client = self._make_client()
            else:
                from discovery.client import RegistryClient

                self._client = RegistryClient()
        return self._client


__all__ = ["InboundLimiter", "RateLimitState", "Refusal"]
