"""PeerAuthentication and AuthorizationPolicy: validated and stored (the sidecars enforce them)."""

from __future__ import annotations

from typing import Any

import pytest

from mesh.model.reader import ConfigError
from mesh.rules.security import AuthorizationPolicySpec, PeerAuthenticationSpec
from tests.mesh.rules.helpers import doc, parse


def test_peer_authentication_parses() -> None:
    spec = parse(
        doc(
            "PeerAuthentication",
            "default",
            {
                "selector": {"matchLabels": {"app": "a"}},
                "mtls": {"mode": "STRICT"},
                "portLevelMtls": {"8080": {"mode": "DISABLE"}},
            },
        )
    ).spec
    assert isinstance(spec, PeerAuthenticationSpec)
    assert spec.mode == "STRICT"
    assert spec.port_modes == ((8080, "DISABLE"),)


def test_authorization_policy_parses() -> None:
    spec = parse(
        doc(
            "AuthorizationPolicy",
            "allow-get",
            {
                "action": "ALLOW",
                "rules": [
                    {
                        "from": [
                            {"source": {"principals": ["cluster.local/ns/default/sa/pp"], "ipBlocks": ["10.0.0.0/8"]}}
                        ],
                        "to": [{"operation": {"methods": ["GET"], "paths": ["/api/*"], "ports": ["9080"]}}],
                        "when": [{"key": "request.headers[x]", "values": ["1"]}],
                    }
                ],
            },
        )
    ).spec
    assert isinstance(spec, AuthorizationPolicySpec)
    assert len(spec.rules) == 1


@pytest.mark.parametrize(
    ("kind", "spec", "error_path", "text"),
    [
        ("PeerAuthentication", {"mtls": {"mode": "ON"}}, "spec.mtls.mode", "one of"),
        ("PeerAuthentication", {"portLevelMtls": {"80": {"mode": "STRICT"}}}, "spec.portLevelMtls", "selector"),
        (
            "PeerAuthentication",
            {"selector": {"matchLabels": {"a": "b"}}, "portLevelMtls": {"http": {"mode": "STRICT"}}},
            "spec.portLevelMtls.http",
            "port number",
        ),
        ("AuthorizationPolicy", {"action": "PERMIT"}, "spec.action", "one of"),
        ("AuthorizationPolicy", {"action": "CUSTOM"}, "spec.provider", "needs a provider"),
        (
            "AuthorizationPolicy",
            {"rules": [{"from": [{"source": {"ipBlocks": ["999.0.0.1"]}}]}]},
            "spec.rules[0].from[0].source.ipBlocks[0]",
            "IP",
        ),
        (
            "AuthorizationPolicy",
            {"rules": [{"to": [{"operation": {"ports": ["http"]}}]}]},
            "spec.rules[0].to[0].operation.ports[0]",
            "port",
        ),
        ("AuthorizationPolicy", {"rules": [{"when": [{"key": "a"}]}]}, "spec.rules[0].when[0]", "values"),
        ("AuthorizationPolicy", {"rules": [{"form": []}]}, "spec.rules[0].form", "unknown key"),
    ],
)
def test_invalid_security_resources_name_the_field(kind: str, spec: dict[str, Any], error_path: str, text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(doc(kind, "p", spec))
    assert info.value.path == error_path, info.value
    assert text in info.value.message
