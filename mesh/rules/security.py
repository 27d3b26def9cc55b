"""``PeerAuthentication`` and ``AuthorizationPolicy`` (security.istio.io/v1): validated and stored (pure).

They are accepted so configuration can be written and reviewed ahead of time, and validated as
Istio validates them. They are **not enforced**: the sidecar's config model has no mTLS or
authorization layer yet (a later security issue); every apply that carries them says so in its
warnings.
"""

from __future__ import annotations

from dataclasses import dataclass

from mesh.model.reader import ConfigError
from mesh.rules.fields import Reader, parse_ip_or_cidr

MTLS_MODES = ("UNSET", "DISABLE", "PERMISSIVE", "STRICT")
ACTIONS = ("ALLOW", "DENY", "AUDIT", "CUSTOM")


@dataclass(frozen=True, slots=True)
class PeerAuthenticationSpec:
    selector: tuple[tuple[str, str], ...] = ()
    mode: str = "UNSET"
    port_modes: tuple[tuple[int, str], ...] = ()


@dataclass(frozen=True, slots=True)
class AuthorizationPolicySpec:
    selector: tuple[tuple[str, str], ...] = ()
    action: str = "ALLOW"
    rules: int = 0  # how many rules (their content is validated, not used yet)


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
    rules = spec.items("rules", _rule)
    if action == "DENY" and any(rule == "empty" for rule in rules):
        raise ConfigError(
            spec.at("rules"), "a DENY policy needs conditions in every rule (an empty rule would deny everything)"
        )
    return AuthorizationPolicySpec(selector, action, len(rules))


def _selector(spec: Reader) -> tuple[tuple[str, str], ...]:
    selector = spec.optional_child("selector")
    if selector is None:
        return ()
    labels = selector.labels("matchLabels")
    selector.finish()
    return labels


def _rule(obj: Reader) -> str:
    sources = obj.items("from", _source)
    operations = obj.items("to", _operation)
    conditions = obj.items("when", _condition)
    return "empty" if not sources and not operations and not conditions else "rule"


def _source(obj: Reader) -> None:
    source = obj.child("source")
    for key in (
        "principals",
        "notPrincipals",
        "requestPrincipals",
        "notRequestPrincipals",
        "namespaces",
        "notNamespaces",
    ):
        source.strings(key)
    for key in ("ipBlocks", "notIpBlocks", "remoteIpBlocks", "notRemoteIpBlocks"):
        for i, block in enumerate(source.strings(key)):
            parse_ip_or_cidr(block, source.at(f"{key}[{i}]"))
    source.finish()


def _operation(obj: Reader) -> None:
    operation = obj.child("operation")
    for key in ("hosts", "notHosts", "methods", "notMethods", "paths", "notPaths"):
        operation.strings(key)
    for key in ("ports", "notPorts"):
        for i, port in enumerate(operation.strings(key)):
            if not port.isdigit() or not 0 < int(port) < 65536:
                raise ConfigError(operation.at(f"{key}[{i}]"), f"must be a port number as a string, got {port!r}")
    operation.finish()


def _condition(obj: Reader) -> None:
    obj.text("key", required=True)
    values = obj.strings("values")
    not_values = obj.strings("notValues")
    if not values and not not_values:
        raise ConfigError(obj.path, "needs values or notValues")


__all__ = [
    "AuthorizationPolicySpec",
    "PeerAuthenticationSpec",
    "parse_authorization_policy",
    "parse_peer_authentication",
]
