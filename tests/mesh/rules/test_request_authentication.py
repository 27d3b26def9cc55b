"""RequestAuthentication: validated as Istio validates it, inline key sets checked key by key."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mesh.model.reader import ConfigError
from mesh.rules.request_authentication import DEFAULT_LOCATIONS, RequestAuthenticationSpec, TokenLocation
from tests.mesh.rules.helpers import doc, parse
from tests.mesh.security.jwt_keys import ISSUER, jwks, rsa_key

KEYS = jwks(rsa_key())


def test_request_authentication_parses() -> None:
    spec = parse(
        doc(
            "RequestAuthentication",
            "jwt",
            {
                "selector": {"matchLabels": {"app": "productpage"}},
                "jwtRules": [
                    {
                        "issuer": ISSUER,
                        "jwks": KEYS,
                        "audiences": ["web"],
                        "fromHeaders": [{"name": "X-Jwt", "prefix": "Token "}],
                        "fromParams": ["jwt"],
                        "fromCookies": ["session"],
                        "outputPayloadToHeader": "x-jwt-payload",
                        "outputClaimToHeaders": [{"header": "x-user", "claim": "sub"}],
                        "forwardOriginalToken": True,
                        "timeout": "2s",
                    },
                    {"issuer": "https://accounts.example.org", "jwksUri": "https://accounts.example.org/keys"},
                ],
            },
        )
    ).spec
    assert isinstance(spec, RequestAuthenticationSpec)
    assert spec.selector == (("app", "productpage"),)
    first, second = spec.jwt_rules
    assert first.locations == (
        TokenLocation("header", "x-jwt", "Token "),
        TokenLocation("param", "jwt"),
        TokenLocation("cookie", "session"),
    )
    assert first.output_claim_to_headers == (("x-user", "sub"),)
    assert first.forward_original_token
    assert first.timeout_s == 2.0
    assert first.key_source == ""
    assert second.locations == DEFAULT_LOCATIONS
    assert second.key_source == "https://accounts.example.org/keys"


def test_without_keys_the_issuers_discovery_document_is_used() -> None:
    spec = parse(doc("RequestAuthentication", "jwt", {"jwtRules": [{"issuer": ISSUER}]})).spec
    assert isinstance(spec, RequestAuthenticationSpec)
    assert spec.jwt_rules[0].key_source == f"openid:{ISSUER}"


def rules(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"jwtRules": list(entries)}


@pytest.mark.parametrize(
    ("spec", "error_path", "text"),
    [
        (rules({"jwks": KEYS}), "spec.jwtRules[0].issuer", "required"),
        (rules({"issuer": ISSUER, "jwks": KEYS, "jwksUri": "https://x/keys"}), "spec.jwtRules[0].jwksUri", "not both"),
        (rules({"issuer": ISSUER, "jwksUri": "ftp://x/keys"}), "spec.jwtRules[0].jwksUri", "http:// or https://"),
        (rules({"issuer": ISSUER, "jwks": "{broken"}), "spec.jwtRules[0].jwks", "is not JSON"),
        (rules({"issuer": ISSUER, "jwks": '{"keys": []}'}), "spec.jwtRules[0].jwks.keys", "no keys"),
        (
            rules({"issuer": ISSUER, "jwks": json.dumps({"keys": [{"kty": "RSA", "n": "x"}]})}),
            "spec.jwtRules[0].jwks.keys[0]",
            "unusable key",
        ),
        (rules({"issuer": ISSUER}, {"issuer": ISSUER}), "spec.jwtRules[1].issuer", "already configured"),
        (
            rules({"issuer": ISSUER, "fromHeaders": [{"prefix": "x"}]}),
            "spec.jwtRules[0].fromHeaders[0].name",
            "required",
        ),
        (
            rules({"issuer": ISSUER, "outputPayloadToHeader": "bad header"}),
            "spec.jwtRules[0].outputPayloadToHeader",
            "header name",
        ),
        (rules({"issuer": ISSUER, "timeout": "soon"}), "spec.jwtRules[0].timeout", "duration"),
        (rules({"issuer": ISSUER, "audience": ["a"]}), "spec.jwtRules[0].audience", "unknown"),
        ({"targetRef": {"kind": "Gateway", "name": "g"}}, "spec.targetRef", "gateways"),
    ],
)
def test_invalid_request_authentication_names_the_field(spec: dict[str, Any], error_path: str, text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(doc("RequestAuthentication", "jwt", spec))
    assert info.value.path == error_path, info.value
    assert text in info.value.message, info.value
