"""``PeerAuthentication`` and ``AuthorizationPolicy`` (security.istio.io/v1, v1beta1): types and validation (pure).

Validated as Istio validates them, into typed values that ``mesh.security.authz`` evaluates.
Istio's rules kept here: a ``from`` entry needs a non-empty ``source`` and a ``to`` entry a
non-empty ``operation``; a ``when`` condition needs a known key and ``values`` or ``notValues``;
``portLevelMtls`` needs a selector. An empty rule (``rules: [{}]``) is valid and matches every
request (so ``action: DENY`` with it denies everything, Istio's "deny all"). Valid Istio this mesh
cannot evaluate is rejected, never ignored: ``action: CUSTOM`` (external authorizers), path
templates (``{*}``), ``targetRef``. The ``request.auth.*`` keys see what ``RequestAuthentication``
verified (``mesh.rules.request_authentication``).

The sidecars enforce them (``sidecar.security``; the control plane puts the mode and the
policies selecting each workload into its snapshot, ``mesh.control.translate_security``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mesh.model.reader import ConfigError
from mesh.rules.fields import Reader, not_supported, parse_ip_or_cidr

MTLS_MODES = ("UNSET", "DISABLE", "PERMISSIVE", "STRICT")
ACTIONS = ("ALLOW", "DENY", "AUDIT", "CUSTOM")

SOURCE_FIELDS = (
    "principals",
    "notPrincipals",
    "requestPrincipals",
    "notRequestPrincipals",
    "namespaces",
    "notNamespaces",
    "ipBlocks",
    "notIpBlocks",
    "remoteIpBlocks",
    "notRemoteIpBlocks",
)
OPERATION_FIELDS = ("hosts", "notHosts", "ports", "notPorts", "methods", "notMethods", "paths", "notPaths")
CONDITION_KEYS = (
    "request.headers[<name>]",
    "source.ip",
    "remote.ip",
    "source.namespace",
    "source.principal",
    "request.auth.principal",
    "request.auth.audiences",
    "request.auth.presenter",
    "request.auth.claims[<name>]",
    "destination.ip",
    "destination.port",
    "connection.sni",
)
_HEADER_KEY = re.compile(r"request\.headers\[([!#$%&'*+\-.^_`|~0-9A-Za-z]+)\]")
_CLAIM_KEY = re.compile(r"request\.auth\.claims((?:\[[^\[\]]+\])+)")
_UNSUPPORTED_KEYS = ("experimental.",)


@dataclass(frozen=True, slots=True)
class PeerAuthenticationSpec:
    selector: tuple[tuple[str, str], ...] = ()
    mode: str = "UNSET"
    port_modes: tuple[tuple[int, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Source:
    """``rules[].from[].source``: each field a tuple of values (empty: not set)."""

    principals: tuple[str, ...] = ()
    not_principals: tuple[str, ...] = ()
    request_principals: tuple[str, ...] = ()
    not_request_principals: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()
    not_namespaces: tuple[str, ...] = ()
    ip_blocks: tuple[str, ...] = ()
    not_ip_blocks: tuple[str, ...] = ()
    remote_ip_blocks: tuple[str, ...] = ()
    not_remote_ip_blocks: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Operation:
    """``rules[].to[].operation``."""

    hosts: tuple[str, ...] = ()
    not_hosts: tuple[str, ...] = ()
    ports: tuple[str, ...] = ()
    not_ports: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    not_methods: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    not_paths: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Condition:
    """``rules[].when[]``: ``key`` is ``source.ip``, ``request.headers[x-token]`` and the like."""

    key: str
    values: tuple[str, ...] = ()
    not_values: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AuthorizationRule:
    sources: tuple[Source, ...] = ()
    operations: tuple[Operation, ...] = ()
    conditions: tuple[Condition, ...] = ()


@dataclass(frozen=True, slots=True)
class AuthorizationPolicySpec:
    selector: tuple[tuple[str, str], ...] = ()
    action: str = "ALLOW"
    rules: tuple[AuthorizationRule, ...] = ()


def parse_peer_authentication(spec: Reader) -> PeerAuthenticationSpec:
    selector = _selector(spec)
    mode = "UNSET"
    mtls = spec.optional_child("mtls")
    if mtls is not None:
        mode = mtls.enum("mode", MTLS_MODES) or "UNSET"
        mtls.finish()
    ports: list[tuple[int, str]] = []
    for key, mode_of_port in spec.mapping_of("portLevelMtls", _port_mode):
        path = spec.at(f"portLevelMtls.{key}")
        if not key.isdigit() or not 1 <= int(key) <= 65535:
            raise ConfigError(path, f"must be keyed by a port number 1..65535, got {key!r}")
        ports.append((int(key), mode_of_port))
    if ports and not selector:
        raise ConfigError(
            spec.at("portLevelMtls"), "needs a selector (Istio: port-level mTLS applies to selected workloads)"
        )
    return PeerAuthenticationSpec(selector, mode, tuple(ports))


def _port_mode(data: object, path: str) -> str:
    obj = Reader(data, path)
    mode = obj.enum("mode", MTLS_MODES, required=True) or "UNSET"
    obj.finish()
    return mode


def parse_authorization_policy(spec: Reader) -> AuthorizationPolicySpec:
    selector = _selector(spec)
    for key in ("targetRef", "targetRefs"):
        if spec.take(key, None) is not None:
            raise ConfigError(spec.at(key), "applies to gateways and waypoints, which this mesh does not run")
    action = spec.enum("action", ACTIONS) or "ALLOW"
    provider = spec.optional_child("provider")
    if provider is not None:
        provider.text("name", required=True)
        provider.finish()
    if action == "CUSTOM" and provider is None:
        raise ConfigError(spec.at("provider"), "action CUSTOM needs a provider")
    if action != "CUSTOM" and provider is not None:
        raise ConfigError(spec.at("provider"), "is only used with action CUSTOM")
    if action == "CUSTOM":
        raise not_supported(spec.at("action"), "action CUSTOM (an external authorizer)")
    rules = spec.items("rules", _rule)
    return AuthorizationPolicySpec(selector, action, rules)


def _selector(spec: Reader) -> tuple[tuple[str, str], ...]:
    selector = spec.optional_child("selector")
    if selector is None:
        return ()
    labels = selector.labels("matchLabels")
    selector.finish()
    return labels


def _rule(obj: Reader) -> AuthorizationRule:
    return AuthorizationRule(obj.items("from", _source), obj.items("to", _operation), obj.items("when", _condition))


def _source(obj: Reader) -> Source:
    source = obj.child("source")
    values = {key: source.strings(key) for key in SOURCE_FIELDS}
    for key in ("ipBlocks", "notIpBlocks", "remoteIpBlocks", "notRemoteIpBlocks"):
        for i, block in enumerate(values[key]):
            parse_ip_or_cidr(block, source.at(f"{key}[{i}]"))
    source.finish()
    if not any(values.values()):
        raise ConfigError(source.path, f"must set at least one of {', '.join(SOURCE_FIELDS)}")
    return Source(*(values[key] for key in SOURCE_FIELDS))


def _operation(obj: Reader) -> Operation:
    operation = obj.child("operation")
    values = {key: operation.strings(key) for key in OPERATION_FIELDS}
    for key in ("ports", "notPorts"):
        for i, port in enumerate(values[key]):
            _check_port(port, operation.at(f"{key}[{i}]"))
    for key in ("paths", "notPaths"):
        for i, path in enumerate(values[key]):
            if "{" in path or "}" in path:
                raise not_supported(operation.at(f"{key}[{i}]"), f"the path template {path!r}")
    operation.finish()
    if not any(values.values()):
        raise ConfigError(operation.path, f"must set at least one of {', '.join(OPERATION_FIELDS)}")
    return Operation(*(values[key] for key in OPERATION_FIELDS))


def _condition(obj: Reader) -> Condition:
    key = obj.text("key", required=True) or ""
    values = obj.strings("values")
    not_values = obj.strings("notValues")
    if not values and not not_values:
        raise ConfigError(obj.path, "needs values or notValues")
    key_path = obj.at("key")
    if any(key.startswith(prefix) for prefix in _UNSUPPORTED_KEYS):
        raise not_supported(key_path, f"the condition key {key!r}")
    if key.startswith("request.headers"):
        if not _HEADER_KEY.fullmatch(key):
            raise ConfigError(key_path, f"must be request.headers[<header name>], got {key!r}")
    elif key.startswith("request.auth.claims"):
        if not _CLAIM_KEY.fullmatch(key):
            raise ConfigError(key_path, f"must be request.auth.claims[<name>] (nested: [<a>][<b>]), got {key!r}")
    elif key not in CONDITION_KEYS:
        raise ConfigError(key_path, f"unknown condition key {key!r} (known: {', '.join(CONDITION_KEYS)})")
    for field, items in (("values", values), ("notValues", not_values)):
        for i, value in enumerate(items):
            if key in ("source.ip", "remote.ip", "destination.ip"):
                parse_ip_or_cidr(value, obj.at(f"{field}[{i}]"))
            elif key == "destination.port":
                _check_port(value, obj.at(f"{field}[{i}]"))
    return Condition(key.lower() if key.startswith("request.headers") else key, values, not_values)


def _check_port(port: str, path: str) -> None:
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(path, f"must be a port number as a string, got {port!r}")


def header_condition_name(key: str) -> str | None:
    """``x-token`` for ``request.headers[x-token]`` (keys are lower-cased at parse time)."""
    match = _HEADER_KEY.fullmatch(key)
    return match.group(1).lower() if match else None


def claim_condition_path(key: str) -> tuple[str, ...] | None:
    """``("a", "b")`` for ``request.auth.claims[a][b]``; None for other keys."""
    match = _CLAIM_KEY.fullmatch(key)
    return tuple(match.group(1)[1:-1].split("][")) if match else None


__all__ = [
    "ACTIONS",
    "CONDITION_KEYS",
    "MTLS_MODES",
    "AuthorizationPolicySpec",
    "AuthorizationRule",
    "Condition",
    "Operation",
    "PeerAuthenticationSpec",
    "Source",
    "claim_condition_path",
    "header_condition_name",
    "parse_authorization_policy",
    "parse_peer_authentication",
]
