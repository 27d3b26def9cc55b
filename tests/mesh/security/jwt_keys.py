"""Signing keys, key sets and tokens for the JWT tests (real RS256/ES256 signatures via PyJWT + cryptography)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

ISSUER = "https://issuer.example.com"


@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: str
    private: Any

    def jwk(self) -> dict[str, Any]:
        public = self.private.public_key()
        algorithm = RSAAlgorithm if self.alg.startswith(("RS", "PS")) else ECAlgorithm
        data: dict[str, Any] = json.loads(algorithm.to_jwk(public))
        return {**data, "kid": self.kid, "alg": self.alg, "use": "sig"}

    def token(self, claims: dict[str, Any] | None = None, *, kid: str | None = "", **overrides: Any) -> str:
        now = int(time.time())
        payload: dict[str, Any] = {"iss": ISSUER, "sub": "alice", "iat": now, "exp": now + 3600}
        payload.update(claims or {})
        payload.update(overrides)
        headers = {"kid": self.kid if kid == "" else kid} if kid is not None else None
        return jwt.encode(payload, self.private, algorithm=self.alg, headers=headers)


def rsa_key(kid: str = "rsa-1") -> SigningKey:
    return SigningKey(kid, "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))


def ec_key(kid: str = "ec-1") -> SigningKey:
    return SigningKey(kid, "ES256", ec.generate_private_key(ec.SECP256R1()))


def jwks(*keys: SigningKey) -> str:
    return json.dumps({"keys": [key.jwk() for key in keys]})
