"""One rule resource: its identity, its envelope (apiVersion, kind, metadata) and its typed spec (pure).

``parse_resource`` reads one decoded document the way ``kubectl apply`` would send it: the
envelope is checked (known kind and API group, DNS-style name and namespace, label syntax),
server-set metadata (``uid``, ``generation``, ``creationTimestamp``, ``managedFields``) and
``status`` are ignored so ``mesh get -o yaml | mesh apply -f -`` round-trips, and
``metadata.resourceVersion`` is kept as the client's precondition. The spec goes to the kind's
parser. Errors carry the field path from the resource root (``spec.http[0].route[1].weight``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mesh.model.reader import REQUIRED, ConfigError, show
from mesh.rules.destination_rule import DestinationRuleSpec, parse_destination_rule
from mesh.rules.fields import Reader, check_dns_label, check_label_key, check_resource_name
from mesh.rules.gateway import GatewaySpec, parse_gateway
from mesh.rules.ratelimit import GROUP as RATELIMIT_GROUP
from mesh.rules.ratelimit import RateLimitPolicySpec, parse_rate_limit_policy
from mesh.rules.request_authentication import RequestAuthenticationSpec, parse_request_authentication
from mesh.rules.security import (
    AuthorizationPolicySpec,
    PeerAuthenticationSpec,
    parse_authorization_policy,
    parse_peer_authentication,
)
from mesh.rules.service_entry import ServiceEntrySpec, parse_service_entry
from mesh.rules.virtual_service import VirtualServiceSpec, parse_virtual_service

DEFAULT_NAMESPACE = "default"
NETWORKING = "networking.istio.io"
SECURITY = "security.istio.io"

Spec = (
    VirtualServiceSpec
    | DestinationRuleSpec
    | ServiceEntrySpec
    | PeerAuthenticationSpec
    | AuthorizationPolicySpec
    | RequestAuthenticationSpec
    | RateLimitPolicySpec
    | GatewaySpec
)


@dataclass(frozen=True, slots=True)
class KindInfo:
    """A resource kind: its API group and versions, its names on the command line, its parser."""

    kind: str
    group: str
    versions: tuple[str, ...]
    plural: str
    short: tuple[str, ...]
    parse: Callable[[Reader], Spec]


KINDS: dict[str, KindInfo] = {
    info.kind: info
    for info in (
        KindInfo(
            "VirtualService",
            NETWORKING,
            ("v1", "v1beta1", "v1alpha3"),
            "virtualservices",
            ("vs",),
            parse_virtual_service,
        ),
        KindInfo(
            "DestinationRule",
            NETWORKING,
            ("v1", "v1beta1", "v1alpha3"),
            "destinationrules",
            ("dr",),
            parse_destination_rule,
        ),
        KindInfo("Gateway", NETWORKING, ("v1", "v1beta1", "v1alpha3"), "gateways", ("gw",), parse_gateway),
        KindInfo(
            "ServiceEntry", NETWORKING, ("v1", "v1beta1", "v1alpha3"), "serviceentries", ("se",), parse_service_entry
        ),
        KindInfo(
            "PeerAuthentication", SECURITY, ("v1", "v1beta1"), "peerauthentications", ("pa",), parse_peer_authentication
        ),
        KindInfo(
            "AuthorizationPolicy",
            SECURITY,
            ("v1", "v1beta1"),
            "authorizationpolicies",
            ("ap",),
            parse_authorization_policy,
        ),
        KindInfo(
            "RequestAuthentication",
            SECURITY,
            ("v1", "v1beta1"),
            "requestauthentications",
            ("ra",),
            parse_request_authentication,
        ),
        KindInfo(
            "RateLimitPolicy",
            RATELIMIT_GROUP,
            ("v1alpha1",),
            "ratelimitpolicies",
            ("rl",),
            parse_rate_limit_policy,
        ),
    )
}
_ALIASES = {
    alias.lower(): info
    for info in KINDS.values()
    for alias in (info.kind, info.plural, info.kind.lower(), info.plural.rstrip("s"), *info.short)
}


def kind_info(name: str) -> KindInfo | None:
    """The kind for ``VirtualService``, ``virtualservices``, ``virtualservice`` or ``vs`` (any case)."""
    return _ALIASES.get(name.lower())


def known_kinds() -> str:
    return ", ".join(KINDS)


@dataclass(frozen=True, slots=True)
class ResourceKey:
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"

    @property
    def id(self) -> str:
        """``Kind/namespace/name``: the storage key and the API path tail."""
        return f"{self.kind}/{self.namespace}/{self.name}"

    @classmethod
    def from_id(cls, text: str) -> ResourceKey:
        kind, namespace, name = text.split("/", 2)
        return cls(kind, namespace, name)


@dataclass(frozen=True, slots=True)
class Resource:
    """A validated resource. ``content`` is its canonical JSON (envelope without server fields)."""

    key: ResourceKey
    api_version: str
    spec: Spec
    labels: tuple[tuple[str, str], ...]
    annotations: tuple[tuple[str, str], ...]
    content: str
    resource_version: str | None = None  # the client's precondition, when given

    @property
    def kind(self) -> str:
        return self.key.kind

    def document(self) -> dict[str, Any]:
        """The resource as a fresh dict (what ``GET`` shows, before server metadata is added)."""
        data: dict[str, Any] = json.loads(self.content)
        return data


def parse_resource(data: object, *, default_namespace: str = DEFAULT_NAMESPACE) -> Resource:
    """Validate one document; ``ConfigError`` names the field at fault."""
    top = Reader(data, "")
    api_version = top.take("apiVersion", REQUIRED)
    kind_name = top.take("kind", REQUIRED)
    if not isinstance(kind_name, str):
        raise ConfigError("kind", f"must be a string, got {show(kind_name)}")
    info = KINDS.get(kind_name)
    if info is None:
        alias = kind_info(kind_name)
        hint = f" (did you mean {alias.kind}?)" if alias is not None else f" (expected one of {known_kinds()})"
        raise ConfigError("kind", f"unknown kind {kind_name!r}{hint}")
    if not isinstance(api_version, str):
        raise ConfigError("apiVersion", f"must be a string, got {show(api_version)}")
    group, _, version = api_version.partition("/")
    if group != info.group or version not in info.versions:
        expected = ", ".join(f"{info.group}/{v}" for v in info.versions)
        raise ConfigError("apiVersion", f"{info.kind} is in {expected}, got {api_version!r}")
    metadata = top.child("metadata")
    name = metadata.text("name", required=True) or ""
    check_resource_name(name, "metadata.name")
    namespace = metadata.text("namespace") or default_namespace
    check_dns_label(namespace, "metadata.namespace", "namespace")
    labels = metadata.labels("labels")
    annotations = metadata.string_map("annotations")
    for key, _ in annotations:
        check_label_key(key, f"metadata.annotations.{key}")
    resource_version = metadata.take("resourceVersion", None)
    if resource_version is not None:
        if isinstance(resource_version, bool) or not isinstance(resource_version, str | int):
            raise ConfigError("metadata.resourceVersion", f"must be a string, got {show(resource_version)}")
        resource_version = str(resource_version)
    for ignored in ("uid", "generation", "creationTimestamp", "managedFields", "selfLink"):
        metadata.take(ignored, None)
    metadata.finish()
    raw_spec = top.take("spec", REQUIRED)
    top.take("status", None)  # written by servers; ignored on input, as Kubernetes does
    top.finish()
    spec_reader = Reader(raw_spec, "spec")
    spec = info.parse(spec_reader)
    spec_reader.finish()
    envelope: dict[str, Any] = {
        "apiVersion": api_version,
        "kind": info.kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": raw_spec,
    }
    if labels:
        envelope["metadata"]["labels"] = dict(labels)
    if annotations:
        envelope["metadata"]["annotations"] = dict(annotations)
    try:
        content = json.dumps(envelope, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError) as exc:  # a YAML date or the like somewhere we do not look
        raise ConfigError("spec", f"holds a value that is not JSON (quote dates and similar): {exc}") from exc
    return Resource(
        key=ResourceKey(info.kind, namespace, name),
        api_version=api_version,
        spec=spec,
        labels=labels,
        annotations=annotations,
        content=content,
        resource_version=resource_version,
    )


__all__ = [
    "DEFAULT_NAMESPACE",
    "KINDS",
    "NETWORKING",
    "SECURITY",
    "KindInfo",
    "Resource",
    "ResourceKey",
    "Spec",
    "kind_info",
    "known_kinds",
    "parse_resource",
]
