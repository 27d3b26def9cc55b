"""``RequestAuthentication`` (security.istio.io/v1, v1beta1): JWT rules, types and validation (pure).

Validated as Istio validates them: every ``jwtRules`` entry needs an ``issuer``; ``jwks`` (an
inline JSON Web Key Set) and ``jwksUri`` exclude each other (with neither, the keys come from
the issuer's OpenID discovery document, ``<issuer>/.well-known/openid-configuration``, as
istiod does); ``fromHeaders`` / ``fromParams`` / ``fromCookies`` say where the token is (none
given: ``Authorization: Bearer <token>``, then the ``access_token`` query parameter). An inline
key set is parsed here, key by key, so a bad one is refused at apply time naming the key.

Enforced by the sidecars it selects (``mesh.security.jwt``, ``sidecar.security``): a request
without a token passes (authorization decides), one with an invalid token gets 401, a valid one
gives the request principal ``<iss>/<sub>`` and claims to ``AuthorizationPolicy``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from mesh.model.reader import ConfigError
from mesh.rules.fields import Reader, check_header_value, parse_header_name

LocationKind = Literal["header", "param", "cookie"]
DEFAULT_TIMEOUT_S = 5.0  # Istio's default for fetching jwksUri


@dataclass(frozen=True, slots=True)
class TokenLocation:
    """Where a token may be: a header (``name`` lower-case, its value after ``prefix``), a query
    parameter or a cookie."""

    kind: LocationKind
    name: str
    prefix: str = ""


DEFAULT_LOCATIONS = (TokenLocation("header", "authorization", "Bearer "), TokenLocation("param", "access_token"))


@dataclass(frozen=True, slots=True)
class JwtRule:
    issuer: str
    audiences: tuple[str, ...] = ()
    jwks_uri: str = ""
    jwks: str = ""  # the inline key set, JSON text ("" when not given)
    locations: tuple[TokenLocation, ...] = DEFAULT_LOCATIONS
    output_payload_to_header: str = ""
    output_claim_to_headers: tuple[tuple[str, str], ...] = ()  # (header, claim)
    forward_original_token: bool = False
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def key_source(self) -> str:
        """Where the control plane gets this rule's keys: the jwksUri, or the issuer's discovery
        document (``openid:<issuer>``); "" when the keys are inline."""
        if self.jwks:
            return ""
        return self.jwks_uri or f"{OPENID_SOURCE}{self.issuer}"


OPENID_SOURCE = "openid:"


@dataclass(frozen=True, slots=True)
class RequestAuthenticationSpec:
    selector: tuple[tuple[str, str], ...] = ()
    jwt_rules: tuple[JwtRule, ...] = ()


def parse_request_authentication(spec: Reader) -> RequestAuthenticationSpec:
    selector_reader = spec.optional_child("selector")
    selector: tuple[tuple[str, str], ...] = ()
    if selector_reader is not None:
        selector = selector_reader.labels("matchLabels")
        selector_reader.finish()
    for key in ("targetRef", "targetRefs"):
        if spec.take(key, None) is not None:
            raise ConfigError(spec.at(key), "applies to gateways and waypoints, which this mesh does not run")
    rules = spec.items("jwtRules", _jwt_rule)
    issuers: dict[str, int] = {}
    for i, rule in enumerate(rules):
        if rule.issuer in issuers:
            raise ConfigError(
                spec.at(f"jwtRules[{i}].issuer"),
                f"issuer {rule.issuer!r} is already configured by jwtRules[{issuers[rule.issuer]}]",
            )
        issuers[rule.issuer] = i
    return RequestAuthenticationSpec(selector, rules)


def _jwt_rule(obj: Reader) -> JwtRule:
    issuer = obj.text("issuer", required=True) or ""
    audiences = obj.strings("audiences")
    jwks_uri = obj.text("jwksUri") or ""
    jwks = obj.text("jwks") or ""
    if jwks and jwks_uri:
        raise ConfigError(obj.at("jwksUri"), "give jwks (inline keys) or jwksUri, not both")
    if jwks_uri:
        check_url(jwks_uri, obj.at("jwksUri"))
    if jwks:
        check_jwks(jwks, obj.at("jwks"))
    locations = (
        obj.items("fromHeaders", _header_location)
        + tuple(TokenLocation("param", name) for name in obj.strings("fromParams"))
        + tuple(TokenLocation("cookie", name) for name in obj.strings("fromCookies"))
    )
    payload_header = obj.text("outputPayloadToHeader") or ""
    if payload_header:
        payload_header = parse_header_name(payload_header, obj.at("outputPayloadToHeader"))
    claim_headers = obj.items("outputClaimToHeaders", _claim_header)
    forward = obj.boolean("forwardOriginalToken") or False
    timeout = obj.duration_s("timeout")
    return JwtRule(
        issuer,
        audiences,
        jwks_uri,
        jwks,
        locations or DEFAULT_LOCATIONS,
        payload_header,
        claim_headers,
        forward,
        DEFAULT_TIMEOUT_S if timeout is None else timeout,
    )


def _header_location(obj: Reader) -> TokenLocation:
    name = parse_header_name(obj.text("name", required=True), obj.at("name"))
    prefix = obj.text("prefix", allow_empty=True) or ""
    if prefix:
        check_header_value(prefix, obj.at("prefix"))
    return TokenLocation("header", name, prefix)


def _claim_header(obj: Reader) -> tuple[str, str]:
    header = parse_header_name(obj.text("header", required=True), obj.at("header"))
    claim = obj.text("claim", required=True) or ""
    return header, claim


def check_url(url: str, path: str) -> None:
    """An http(s) URL with a host (a jwksUri, an issuer's discovery location)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(path, f"must be an http:// or https:// URL with a host, got {url!r}")


def check_jwks(text: str, path: str) -> None:
    """Refuse a key set that is not JSON, has no keys, or has a key that cannot verify a signature."""
    from mesh.security.jwt import JwksError, load_jwks  # loads the JOSE library only when keys are given

    try:
        load_jwks(text)
    except JwksError as exc:
        raise ConfigError(f"{path}{exc.where}", exc.message) from exc


__all__ = [
    "DEFAULT_LOCATIONS",
    "OPENID_SOURCE",
    "JwtRule",
    "RequestAuthenticationSpec",
    "TokenLocation",
    "check_jwks",
    "check_url",
    "parse_request_authentication",
]
