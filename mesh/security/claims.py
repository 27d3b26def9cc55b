"""What end-user authentication yields (``Authenticated``, ``Rejected``) and how authorization and
header outputs read a verified token's claims (pure; the JOSE library stays in ``mesh.security.jwt``)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mesh.rules.request_authentication import JwtRule, TokenLocation


@dataclass(frozen=True, slots=True)
class Authenticated:
    """A verified token: who (``principal``), its claims, and the rule and location it came from."""

    principal: str  # "<iss>/<sub>"
    claims: Mapping[str, Any]
    rule: JwtRule = field(repr=False)
    location: TokenLocation
    payload: str  # the token's payload part (base64url), for outputPayloadToHeader
    expires: float | None  # exp, for the cache


@dataclass(frozen=True, slots=True)
class Rejected:
    """A token was present and is not valid: ``message`` is Envoy's words for why (the 401's body)."""

    message: str


def audiences_of(claims: Mapping[str, Any]) -> tuple[str, ...]:
    aud = claims.get("aud")
    if isinstance(aud, str):
        return (aud,)
    if isinstance(aud, list):
        return tuple(item for item in aud if isinstance(item, str))
    return ()


def claim_values(claims: Mapping[str, Any], path: Sequence[str]) -> tuple[str, ...]:
    """The values of a (nested) claim as strings: a string claim is one value, a list of strings
    its elements; numbers and booleans in JSON spelling; objects and absent claims: none."""
    value: Any = claims
    for name in path:
        if not isinstance(value, Mapping) or name not in value:
            return ()
        value = value[name]
    items = value if isinstance(value, list) else [value]
    return tuple(text for item in items if (text := _scalar(item)) is not None)


def claim_header_value(claims: Mapping[str, Any], claim: str) -> str | None:
    """``outputClaimToHeaders``: a string, number or boolean claim (Envoy writes no header for others)."""
    return _scalar(claims.get(claim))


def _scalar(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    return None


__all__ = ["Authenticated", "Rejected", "audiences_of", "claim_header_value", "claim_values"]
