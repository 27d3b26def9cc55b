"""AuthorizationPolicy and PeerAuthentication: the typed values authorization reads, and Istio's validation rules."""

from __future__ import annotations

from typing import Any

import pytest

from mesh.model.reader import ConfigError
from mesh.rules.resource import kind_info, parse_resource
from mesh.rules.security import AuthorizationPolicySpec, AuthorizationRule, Condition, Operation, Source
from tests.mesh.rules.helpers import doc, parse


def test_rules_are_parsed_into_typed_values() -> None:
    spec = parse(
        doc(
            "AuthorizationPolicy",
            "p",
            {
                "selector": {"matchLabels": {"app": "reviews"}},
                "action": "DENY",
                "rules": [
                    {
                        "from": [{"source": {"principals": ["a"], "notNamespaces": ["b"]}}],
                        "to": [{"operation": {"methods": ["GET"], "notPaths": ["/x"], "ports": ["80"]}}],
                        "when": [{"key": "request.headers[X-Token]", "values": ["t"]}],
                    },
                    {},
                ],
            },
        )
    ).spec
    assert spec == AuthorizationPolicySpec(
        selector=(("app", "reviews"),),
        action="DENY",
        rules=(
            AuthorizationRule(
                sources=(Source(principals=("a",), not_namespaces=("b",)),),
                operations=(Operation(methods=("GET",), not_paths=("/x",), ports=("80",)),),
                conditions=(Condition("request.headers[x-token]", ("t",)),),
            ),
            AuthorizationRule(),
        ),
    )


def test_both_api_versions_and_short_names_are_accepted() -> None:
    for version in ("v1", "v1beta1"):
        data = doc("AuthorizationPolicy", "p", {})
        data["apiVersion"] = f"security.istio.io/{version}"
        assert parse_resource(data).kind == "AuthorizationPolicy"
    assert kind_info("ap") is not None
    assert kind_info("peerauthentications") is not None


def rule(**parts: Any) -> dict[str, Any]:
    return {"rules": [parts]}


@pytest.mark.parametrize(
    ("spec", "error_path", "text"),
    [
        (rule(**{"from": [{}]}), "spec.rules[0].from[0].source", "required"),
        (rule(**{"from": [{"source": {}}]}), "spec.rules[0].from[0].source", "at least one of"),
        (rule(to=[{"operation": {}}]), "spec.rules[0].to[0].operation", "at least one of"),
        (rule(to=[{"operation": {"verbs": ["GET"]}}]), "spec.rules[0].to[0].operation.verbs", "unknown"),
        (rule(**{"from": [{"source": {"principal": ["a"]}}]}), "spec.rules[0].from[0].source.principal", "unknown"),
        (rule(to=[{"operation": {"paths": ["/api/{*}"]}}]), "spec.rules[0].to[0].operation.paths[0]", "not supported"),
        (rule(to=[{"operation": {"methods": [""]}}]), "spec.rules[0].to[0].operation.methods[0]", "non-empty"),
        (rule(when=[{"key": "request.host", "values": ["a"]}]), "spec.rules[0].when[0].key", "unknown condition key"),
        (rule(when=[{"key": "request.headers[]", "values": ["a"]}]), "spec.rules[0].when[0].key", "header name"),
        (
            rule(when=[{"key": "request.auth.claims[]", "values": ["a"]}]),
            "spec.rules[0].when[0].key",
            "request.auth.claims[<name>]",
        ),
        (
            rule(when=[{"key": "experimental.envoy.filters.a", "values": ["a"]}]),
            "spec.rules[0].when[0].key",
            "not supported",
        ),
        (rule(when=[{"key": "source.ip", "values": ["not-an-ip"]}]), "spec.rules[0].when[0].values[0]", "IP"),
        (rule(when=[{"key": "destination.port", "notValues": ["http"]}]), "spec.rules[0].when[0].notValues[0]", "port"),
        (
            rule(when=[{"key": "source.ip", "values": ["1.2.3.4"], "extra": 1}]),
            "spec.rules[0].when[0].extra",
            "unknown",
        ),
        ({"action": "CUSTOM", "provider": {"name": "ext-authz"}}, "spec.action", "not supported"),
        ({"rules": {"from": []}}, "spec.rules", "list"),
        ({"selector": {"matchLabels": {"app": "a b"}}}, "spec.selector.matchLabels.app", "label value"),
        ({"action": "ALLOW", "unknown": True}, "spec.unknown", "unknown"),
    ],
)
def test_invalid_authorization_policies_name_the_field(spec: dict[str, Any], error_path: str, text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(doc("AuthorizationPolicy", "p", spec))
    assert info.value.path == error_path, info.value
    assert text in info.value.message, info.value


@pytest.mark.parametrize(
    ("spec", "error_path", "text"),
    [
        ({"mtls": {"mode": "STRICT", "extra": 1}}, "spec.mtls.extra", "unknown"),
        ({"mtls": "STRICT"}, "spec.mtls", "mapping"),
        (
            {"selector": {"matchLabels": {"a": "b"}}, "portLevelMtls": {"70000": {"mode": "STRICT"}}},
            "spec.portLevelMtls.70000",
            "port number",
        ),
        (
            {"selector": {"matchLabels": {"a": "b"}}, "portLevelMtls": {"80": {}}},
            "spec.portLevelMtls.80.mode",
            "required",
        ),
    ],
)
def test_invalid_peer_authentications_name_the_field(spec: dict[str, Any], error_path: str, text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(doc("PeerAuthentication", "p", spec))
    assert info.value.path == error_path, info.value
    assert text in info.value.message, info.value
