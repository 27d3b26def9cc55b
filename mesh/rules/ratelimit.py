"""``RateLimitPolicy`` (policy.pymesh.io/v1alpha1): request rate limits for workloads, types and validation (pure).

Istio has no resource for rate limits (its users write EnvoyFilters for Envoy's local_ratelimit
filter and the global rate limit service); this is the same pair of features as one resource::

    apiVersion: policy.pymesh.io/v1alpha1
    kind: RateLimitPolicy
    metadata: {name: productpage, namespace: default}
    spec:
      selector: {matchLabels: {app: productpage}}   # the workloads whose inbound requests count
      limits:
      - name: per-user                              # unique in the policy; metrics and logs name it
        match: {paths: ["/api/*"], methods: [POST]} # which requests (absent: all)
        key: {header: x-user-id}                    # one bucket per value (or sourceIp: {}; absent: one)
        tokenBucket: {maxTokens: 10, tokensPerFill: 10, fillInterval: 1s}   # local, per sidecar
      - name: everyone
        shared:                                     # one budget across every sidecar of the workload
          requestsPerUnit: 1000
          unit: MINUTE                              # SECOND, MINUTE, HOUR, DAY
          failureMode: ALLOW                        # the registry unreachable: ALLOW (default) or DENY

Selection is ``AuthorizationPolicy``'s: the policy's namespace (the root namespace: every
namespace), narrowed by ``selector``. ``tokenBucket`` is Envoy's: the bucket starts full, every
``fillInterval`` adds ``tokensPerFill`` up to ``maxTokens``, a request takes one token. ``shared``
is the rate limit service's fixed window of ``requestsPerUnit`` per ``unit``, counted in the
registry's KV. A request without the key's header is counted under the empty value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mesh.model.reader import ConfigError
from mesh.rules.fields import Reader, check_dns_label, parse_header_name

GROUP = "policy.pymesh.io"
UNITS = {"SECOND": 1.0, "MINUTE": 60.0, "HOUR": 3600.0, "DAY": 86400.0}
FAILURE_MODES = ("ALLOW", "DENY")
MAX_TOKENS = 1_000_000_000

KeyKind = Literal["all", "header", "source_ip"]


@dataclass(frozen=True, slots=True)
class LimitMatch:
    """Which requests a limit counts: Istio string matches (``/api/*``, ``*.json``, ``*``), ORed per field."""

    paths: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LimitKey:
    kind: KeyKind = "all"
    header: str = ""  # lower-case, for kind "header"


@dataclass(frozen=True, slots=True)
class TokenBucket:
    max_tokens: int
    tokens_per_fill: int
    fill_interval_s: float


@dataclass(frozen=True, slots=True)
class SharedQuota:
    requests_per_unit: int
    unit: str  # SECOND, MINUTE, HOUR, DAY
    failure_mode: str = "ALLOW"

    @property
    def window_s(self) -> float:
        return UNITS[self.unit]


@dataclass(frozen=True, slots=True)
class Limit:
    name: str
    match: LimitMatch = LimitMatch()
    key: LimitKey = LimitKey()
    token_bucket: TokenBucket | None = None
    shared: SharedQuota | None = None


@dataclass(frozen=True, slots=True)
class RateLimitPolicySpec:
    selector: tuple[tuple[str, str], ...] = ()
    limits: tuple[Limit, ...] = ()


def parse_rate_limit_policy(spec: Reader) -> RateLimitPolicySpec:
    selector_reader = spec.optional_child("selector")
    selector: tuple[tuple[str, str], ...] = ()
    if selector_reader is not None:
        selector = selector_reader.labels("matchLabels")
        selector_reader.finish()
    limits = spec.items("limits", _limit, required=True)
    if not limits:
        raise ConfigError(spec.at("limits"), "needs at least one limit")
    seen: dict[str, int] = {}
    for i, limit in enumerate(limits):
        if limit.name in seen:
            raise ConfigError(spec.at(f"limits[{i}].name"), f"{limit.name!r} already names limits[{seen[limit.name]}]")
        seen[limit.name] = i
    return RateLimitPolicySpec(selector, limits)


def _limit(obj: Reader) -> Limit:
    name = check_dns_label(obj.text("name", required=True) or "", obj.at("name"), "limit name")
    match_reader = obj.optional_child("match")
    match = LimitMatch()
    if match_reader is not None:
        match = LimitMatch(match_reader.strings("paths"), match_reader.strings("methods"))
        match_reader.finish()
    key = _key(obj.optional_child("key"))
    bucket_reader = obj.optional_child("tokenBucket")
    shared_reader = obj.optional_child("shared")
    if (bucket_reader is None) == (shared_reader is None):
        raise ConfigError(obj.path, "needs exactly one of tokenBucket (a local limit) or shared (one across sidecars)")
    bucket = _token_bucket(bucket_reader) if bucket_reader is not None else None
    shared = _shared(shared_reader) if shared_reader is not None else None
    return Limit(name, match, key, bucket, shared)


def _key(obj: Reader | None) -> LimitKey:
    if obj is None:
        return LimitKey()
    header = obj.text("header")
    source_ip = obj.optional_child("sourceIp")
    if source_ip is not None:
        source_ip.finish()
    obj.finish()
    if header is not None and source_ip is not None:
        raise ConfigError(obj.path, "give one of header or sourceIp")
    if header is not None:
        return LimitKey("header", parse_header_name(header, obj.at("header")))
    if source_ip is not None:
        return LimitKey("source_ip")
    raise ConfigError(obj.path, "needs header (a request header's value) or sourceIp: {}")


def _token_bucket(obj: Reader) -> TokenBucket:
    max_tokens = obj.whole("maxTokens", 1, MAX_TOKENS, required=True) or 1
    per_fill = obj.whole("tokensPerFill", 1, MAX_TOKENS)
    interval = obj.duration_s("fillInterval")
    if interval is None:
        raise ConfigError(obj.at("fillInterval"), "is required (a duration such as 1s or 100ms)")
    if interval < 0.05:
        raise ConfigError(obj.at("fillInterval"), "must be at least 50ms (Envoy's minimum)")
    obj.finish()
    return TokenBucket(max_tokens, max_tokens if per_fill is None else per_fill, interval)


def _shared(obj: Reader) -> SharedQuota:
    per_unit = obj.whole("requestsPerUnit", 1, MAX_TOKENS, required=True) or 1
    unit = obj.enum("unit", tuple(UNITS), required=True) or "SECOND"
    failure_mode = obj.enum("failureMode", FAILURE_MODES) or "ALLOW"
    obj.finish()
    return SharedQuota(per_unit, unit, failure_mode)


__all__ = [
    "FAILURE_MODES",
    "GROUP",
    "UNITS",
    "Limit",
    "LimitKey",
    "LimitMatch",
    "RateLimitPolicySpec",
    "SharedQuota",
    "TokenBucket",
    "parse_rate_limit_policy",
]
