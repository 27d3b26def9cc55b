"""End-user authentication: JWT verification as Envoy's jwt_authn does it under Istio (pure, no sockets).

``JwtAuthenticator.authenticate`` takes one request's headers and query string and returns:

- ``None`` when no configured location holds a token (Istio: the request passes; an
  ``AuthorizationPolicy`` with ``requestPrincipals`` decides whether that is enough);
- ``Rejected`` with Envoy's message when a token is present and not valid: not three base64url
  parts, an issuer no rule names (``Jwt issuer is not configured``), no key for its ``kid``/
  ``alg``, a bad signature (``Jwt verification fails``), expired, not yet valid, an audience the
  rule does not allow; every token found must be valid;
- ``Authenticated`` otherwise: the request principal ``<iss>/<sub>``, the claims, and the rule
  and location the token came from (the sidecar then removes the token unless
  ``forwardOriginalToken``, and writes ``outputPayloadToHeader`` / ``outputClaimToHeaders``).

A token's issuer picks the rule (Envoy's provider by issuer); the rule's key set must hold a key
for the token's ``kid`` (any key of a compatible type when the token has none); the algorithm
must belong to the key's type (RSA: RS*/PS*, EC: ES*, OKP: EdDSA, oct: HS*), which closes the
"HS256 with an RSA public key" confusion. ``exp`` and ``nbf`` are checked with Envoy's default
60 s clock skew; audiences only when the rule lists some. Verified tokens are cached (bounded),
so a client repeating its token pays the signature check once until the token expires.

The JOSE work is PyJWT's (with ``cryptography``); this module imports it, so sidecars load it only
when a snapshot carries JWT rules.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import jwt

from mesh.rules.request_authentication import JwtRule, TokenLocation
from mesh.security.claims import Authenticated, Rejected, audiences_of

CLOCK_SKEW_S = 60  # Envoy's jwt_authn default
CACHE_SIZE = 1024
MISSING_KEYS = "Jwks remote fetch is failed"  # Envoy's words when a rule has no usable keys

_FAMILIES: Mapping[str, tuple[str, ...]] = {
    "RSA": ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"),
    "EC": ("ES256", "ES384", "ES512", "ES256K"),
    "OKP": ("EdDSA",),
    "oct": ("HS256", "HS384", "HS512"),
}


class JwksError(ValueError):
    """A key set that cannot be used; ``where`` is the path inside it (``.keys[1]``), or ""."""

    def __init__(self, message: str, where: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.where = where


@dataclass(frozen=True, slots=True)
class SigningKey:
    key: Any  # the JOSE library's public (or, for oct, shared) key object
    kty: str
    kid: str | None
    alg: str | None  # the JWK's own "alg", when it names one: then only that algorithm

    def verifies(self, alg: object, kid: object) -> bool:
        """Whether a token signed with ``alg`` (and naming ``kid``, or None) may be checked with this key."""
        return (
            alg in _FAMILIES.get(self.kty, ())
            and (self.alg is None or self.alg == alg)
            and (kid is None or self.kid == kid)
        )


def load_jwks(text: str) -> tuple[SigningKey, ...]:
    """The signing keys of a JSON Web Key Set (RFC 7517); ``JwksError`` names the first bad part."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise JwksError(f"is not JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise JwksError('must be a JSON Web Key Set: an object with a "keys" list')
    if not data["keys"]:
        raise JwksError("the key set has no keys", ".keys")
    keys = []
    for i, item in enumerate(data["keys"]):
        if not isinstance(item, dict):
            raise JwksError("must be a JSON Web Key (an object)", f".keys[{i}]")
        if item.get("use") == "enc":
            continue  # an encryption key never verifies a signature
        try:
            parsed = jwt.PyJWK(item)
        except jwt.PyJWTError as exc:
            raise JwksError(f"unusable key: {exc}", f".keys[{i}]") from exc
        alg, kid = item.get("alg"), item.get("kid")
        keys.append(
            SigningKey(
                parsed.key,
                str(item["kty"]),
                kid if isinstance(kid, str) else None,
                alg if isinstance(alg, str) else None,
            )
        )
    if not keys:
        raise JwksError("the key set has no signing keys (every key has use: enc)", ".keys")
    return tuple(keys)


@dataclass(frozen=True, slots=True)
class _Provider:
    rule: JwtRule
    keys: tuple[SigningKey, ...]
    key_error: str  # why there are no keys ("" when there are)


class JwtAuthenticator:
    """The JWT rules of the RequestAuthentication policies selecting one workload, compiled once."""

    def __init__(self, rules: Sequence[JwtRule], clock: Callable[[], float] = time.time) -> None:
        self._providers: dict[str, _Provider] = {}
        for rule in rules:
            keys: tuple[SigningKey, ...] = ()
            error = ""
            try:
                keys = load_jwks(rule.jwks) if rule.jwks else ()
            except JwksError as exc:
                error = exc.message
            self._providers.setdefault(rule.issuer, _Provider(rule, keys, error if rule.jwks else MISSING_KEYS))
        locations: list[TokenLocation] = []
        for rule in rules:
            locations.extend(loc for loc in rule.locations if loc not in locations)
        self.locations = tuple(locations)
        self._headers = frozenset(loc.name.encode("latin-1") for loc in locations if loc.kind in ("header",))
        self._wants_query = any(loc.kind == "param" for loc in locations)
        self._wants_cookies = any(loc.kind == "cookie" for loc in locations)
        self._clock = clock
        self._cache: dict[str, Authenticated] = {}

    def authenticate(self, headers: Sequence[tuple[bytes, bytes]], query: str) -> Authenticated | Rejected | None:
        found = self._tokens(headers, query)
        if not found:
            return None
        first: Authenticated | None = None
        for token, location in found:
            outcome = self._verify(token, location)
            if isinstance(outcome, Rejected):
                return outcome
            first = first or outcome
        return first

    # === tokens ===

    def _tokens(self, headers: Sequence[tuple[bytes, bytes]], query: str) -> list[tuple[str, TokenLocation]]:
        values: dict[str, list[str]] = {}
        wanted = self._headers
        for name, value in headers:
            lowered = name.lower()
            if lowered in wanted:
                values.setdefault(lowered.decode("latin-1"), []).append(value.decode("latin-1"))
            elif self._wants_cookies and lowered == b"cookie":
                values.setdefault("cookie", []).append(value.decode("latin-1"))
        params = dict(parse_qsl(query, keep_blank_values=True)) if self._wants_query and query else {}
        cookies = _cookies(values.get("cookie", ())) if self._wants_cookies else {}
        found: list[tuple[str, TokenLocation]] = []
        for location in self.locations:
            token: str | None = None
            if location.kind == "header":
                for text in values.get(location.name, ()):
                    if text.startswith(location.prefix):
                        token = text[len(location.prefix) :].strip()
                        break
            elif location.kind == "param":
                token = params.get(location.name)
            else:
                token = cookies.get(location.name)
            if token and all(token != seen for seen, _ in found):
                found.append((token, location))
        return found

    # === verification ===

    def _verify(self, token: str, location: TokenLocation) -> Authenticated | Rejected:
        now = self._clock()
        cached = self._cache.get(token)
        if cached is not None and cached.location == location:
            if cached.expires is None or now <= cached.expires + CLOCK_SKEW_S:
                return cached
            del self._cache[token]
        parts = token.split(".")
        if len(parts) != 3:
            return Rejected("Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections")
        try:
            header = json.loads(_b64decode(parts[0]))
            payload = json.loads(_b64decode(parts[1]))
        except (ValueError, binascii.Error):
            return Rejected("Jwt header or payload is an invalid JSON")
        if not isinstance(header, dict) or not isinstance(payload, dict):
            return Rejected("Jwt header or payload is an invalid JSON")
        issuer = payload.get("iss")
        provider = self._providers.get(issuer) if isinstance(issuer, str) else None
        if provider is None:
            return Rejected("Jwt issuer is not configured")
        if location not in provider.rule.locations:
            return Rejected("Jwt issuer is not configured")  # Envoy: this provider never reads that location
        outcome = _check_times(payload, now) or self._check(token, header, payload, provider)
        if isinstance(outcome, Rejected):
            return outcome
        expires = payload.get("exp")
        result = Authenticated(
            f"{issuer}/{payload.get('sub', '')}",
            payload,
            provider.rule,
            location,
            parts[1],
            float(expires) if isinstance(expires, int | float) and not isinstance(expires, bool) else None,
        )
        if len(self._cache) >= CACHE_SIZE:
            self._cache.clear()
        self._cache[token] = result
        return result

    @staticmethod
    def _check(token: str, header: dict[str, Any], payload: dict[str, Any], provider: _Provider) -> Rejected | None:
        if not provider.keys:
            return Rejected(provider.key_error or MISSING_KEYS)
        alg = header.get("alg")
        kid = header.get("kid")
        candidates = [key for key in provider.keys if key.verifies(alg, kid)]
        if not candidates:
            return Rejected("Jwks doesn't have key to match kid or alg from Jwt")
        error: Rejected | None = None
        for key in candidates:
            try:
                jwt.decode(
                    token,
                    key=key.key,
                    algorithms=[str(alg)],
                    options={
                        "verify_aud": False,
                        "verify_iat": False,
                        "verify_iss": False,
                        "verify_exp": False,  # checked before, on this authenticator's clock
                        "verify_nbf": False,
                        "require": [],
                    },
                )
            except jwt.PyJWTError:
                error = Rejected("Jwt verification fails")
                continue
            break
        else:
            return error or Rejected("Jwt verification fails")
        audiences = provider.rule.audiences
        if audiences and not set(audiences_of(payload)) & set(audiences):
            return Rejected("Audiences in Jwt are not allowed")
        return None


def _check_times(payload: dict[str, Any], now: float) -> Rejected | None:
    """``exp`` and ``nbf`` with the clock skew, before the signature (as Envoy orders its checks)."""
    expires, not_before = payload.get("exp"), payload.get("nbf")
    for value in (expires, not_before):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            return Rejected("Jwt verification fails")  # a time claim that is not a number
    if expires is not None and now > expires + CLOCK_SKEW_S:
        return Rejected("Jwt is expired")
    if not_before is not None and now + CLOCK_SKEW_S < not_before:
        return Rejected("Jwt not yet valid")
    return None


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _cookies(values: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values:
        for piece in value.split(";"):
            name, sep, text = piece.strip().partition("=")
            if sep and name and name not in out:
                out[name] = text.strip()
    return out


__all__ = [
    "CLOCK_SKEW_S",
    "JwksError",
    "JwtAuthenticator",
    "SigningKey",
    "load_jwks",
]
