"""JWT verification as Envoy's jwt_authn does it under Istio: real RS256/ES256 signatures, no sockets."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from mesh.rules.request_authentication import JwtRule, TokenLocation
from mesh.security.claims import Authenticated, Rejected, claim_header_value, claim_values
from mesh.security.jwt import JwksError, JwtAuthenticator, load_jwks
from tests.mesh.security.jwt_keys import ISSUER, ec_key, jwks, rsa_key

RSA = rsa_key()
EC = ec_key()


def bearer(token: str) -> list[tuple[bytes, bytes]]:
    return [(b"Authorization", f"Bearer {token}".encode())]


def authenticator(**fields: object) -> JwtAuthenticator:
    return JwtAuthenticator([JwtRule(ISSUER, jwks=jwks(RSA, EC), **fields)])  # type: ignore[arg-type]


def test_valid_rs256_and_es256_tokens_give_the_request_principal() -> None:
    auth = authenticator()
    for key in (RSA, EC):
        outcome = auth.authenticate(bearer(key.token({"sub": "bob", "groups": ["dev"]})), "")
        assert isinstance(outcome, Authenticated)
        assert outcome.principal == f"{ISSUER}/bob"
        assert outcome.claims["groups"] == ["dev"]
        assert outcome.location == TokenLocation("header", "authorization", "Bearer ")


def test_no_token_is_not_a_failure() -> None:
    assert authenticator().authenticate([(b"Host", b"web")], "") is None
    assert authenticator().authenticate([(b"Authorization", b"Basic dXNlcjpwYXNz")], "") is None


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (RSA.token(exp=int(time.time()) - 3600), "Jwt is expired"),
        (RSA.token(nbf=int(time.time()) + 3600), "Jwt not yet valid"),
        (RSA.token(iss="https://other.example.com"), "Jwt issuer is not configured"),
        (RSA.token(kid="unknown"), "Jwks doesn't have key to match kid or alg from Jwt"),
        (rsa_key("rsa-1").token(), "Jwt verification fails"),  # same kid, another key
        ("not-a-jwt", "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"),
        ("e30.bm90IGpzb24.c2ln", "Jwt header or payload is an invalid JSON"),
    ],
)
def test_invalid_tokens_are_rejected_with_envoys_message(token: str, message: str) -> None:
    assert authenticator().authenticate(bearer(token), "") == Rejected(message)


def test_expiry_within_the_clock_skew_still_passes() -> None:
    outcome = authenticator().authenticate(bearer(RSA.token(exp=int(time.time()) - 30)), "")
    assert isinstance(outcome, Authenticated)


def test_audiences_are_checked_only_when_the_rule_lists_some() -> None:
    listed = authenticator(audiences=("web", "api"))
    assert isinstance(listed.authenticate(bearer(RSA.token({"aud": ["other", "api"]})), ""), Authenticated)
    assert listed.authenticate(bearer(RSA.token({"aud": "other"})), "") == Rejected("Audiences in Jwt are not allowed")
    assert listed.authenticate(bearer(RSA.token()), "") == Rejected("Audiences in Jwt are not allowed")
    assert isinstance(authenticator().authenticate(bearer(RSA.token({"aud": "anything"})), ""), Authenticated)


def test_hs256_signed_with_the_public_key_is_refused() -> None:
    """The classic algorithm confusion: an RSA key set never verifies an HMAC token."""
    public_pem = RSA.private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    forged = _hmac_token({"iss": ISSUER, "sub": "mallory"}, public_pem, kid=RSA.kid)
    assert authenticator().authenticate(bearer(forged), "") == Rejected(
        "Jwks doesn't have key to match kid or alg from Jwt"
    )


def test_alg_none_is_refused() -> None:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    payload = _b64(json.dumps({"iss": ISSUER, "sub": "mallory"}).encode())
    outcome = authenticator().authenticate(bearer(f"{header}.{payload}."), "")
    assert outcome == Rejected("Jwks doesn't have key to match kid or alg from Jwt")


def test_a_token_without_kid_is_checked_against_compatible_keys() -> None:
    assert isinstance(authenticator().authenticate(bearer(EC.token(kid=None)), ""), Authenticated)


def test_custom_locations_params_and_cookies() -> None:
    auth = authenticator(
        locations=(
            TokenLocation("header", "x-jwt-assertion", "Token "),
            TokenLocation("param", "jwt"),
            TokenLocation("cookie", "session"),
        )
    )
    token = RSA.token()
    assert isinstance(auth.authenticate([(b"X-JWT-Assertion", f"Token {token}".encode())], ""), Authenticated)
    assert isinstance(auth.authenticate([], f"a=1&jwt={token}"), Authenticated)
    assert isinstance(auth.authenticate([(b"Cookie", f"theme=dark; session={token}".encode())], ""), Authenticated)
    # the default locations are not read when the rule names its own
    assert auth.authenticate(bearer(token), "access_token=" + token) is None


def test_every_token_found_must_be_valid() -> None:
    good, bad = RSA.token(), RSA.token(exp=int(time.time()) - 3600)
    assert authenticator().authenticate(bearer(good), f"access_token={bad}") == Rejected("Jwt is expired")


def test_a_rule_without_keys_rejects_its_tokens() -> None:
    auth = JwtAuthenticator([JwtRule(ISSUER)])  # the control plane could not fetch the keys
    assert auth.authenticate(bearer(RSA.token()), "") == Rejected("Jwks remote fetch is failed")


def test_cached_tokens_still_expire() -> None:
    now = [time.time()]
    auth = JwtAuthenticator([JwtRule(ISSUER, jwks=jwks(RSA))], clock=lambda: now[0])
    token = RSA.token(exp=int(now[0]) + 10)
    first = auth.authenticate(bearer(token), "")
    assert isinstance(first, Authenticated)
    assert auth.authenticate(bearer(token), "") is first  # served from the cache
    now[0] += 3600
    assert auth.authenticate(bearer(token), "") == Rejected("Jwt is expired")


def test_issuer_picks_the_rule() -> None:
    other = rsa_key("other-1")
    auth = JwtAuthenticator(
        [JwtRule(ISSUER, jwks=jwks(RSA)), JwtRule("https://second.example.com", jwks=jwks(other), audiences=("x",))]
    )
    outcome = auth.authenticate(bearer(other.token(iss="https://second.example.com", aud="x")), "")
    assert isinstance(outcome, Authenticated)
    assert outcome.rule.issuer == "https://second.example.com"


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        ("{not json", "", "is not JSON"),
        ('{"keys": []}', ".keys", "no keys"),
        ('{"keys": [{"kty": "XYZ"}]}', ".keys[0]", "unusable key"),
        ('{"keys": [{"kty": "RSA", "n": "AQAB"}]}', ".keys[0]", "unusable key"),
        ('{"keys": [{"kty": "RSA", "use": "enc", "n": "x", "e": "AQAB"}]}', ".keys", "no signing keys"),
        ("[1, 2]", "", "JSON Web Key Set"),
    ],
)
def test_bad_key_sets_name_the_problem(text: str, where: str, message: str) -> None:
    with pytest.raises(JwksError) as caught:
        load_jwks(text)
    assert caught.value.where == where
    assert message in caught.value.message


def test_claim_values() -> None:
    claims = {"groups": ["dev", "ops", 3], "org": {"team": "payments"}, "admin": True, "level": 2, "obj": {"a": 1}}
    assert claim_values(claims, ("groups",)) == ("dev", "ops", "3")
    assert claim_values(claims, ("org", "team")) == ("payments",)
    assert claim_values(claims, ("admin",)) == ("true",)
    assert claim_values(claims, ("missing",)) == ()
    assert claim_values(claims, ("obj",)) == ()
    assert claim_header_value(claims, "level") == "2"
    assert claim_header_value(claims, "groups") is None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hmac_token(payload: dict[str, object], secret: bytes, kid: str) -> str:
    """An HS256 token built by hand: PyJWT itself refuses to use a PEM public key as an HMAC secret."""
    signing_input = f"{_b64(json.dumps({'alg': 'HS256', 'kid': kid}).encode())}.{_b64(json.dumps(payload).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    token = f"{signing_input}.{_b64(signature)}"
    assert pyjwt.get_unverified_header(token)["alg"] == "HS256"
    return token
