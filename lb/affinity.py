"""Session affinity: which part of a request becomes the hash key, and the cookie to hand out.

Affinity works only with a hashing policy (``ring_hash`` or ``maglev``), as in Envoy, where hash
policies feed the consistent-hash load balancers and every other balancer ignores the hash.
The spec parser rejects affinity on other policies (``lb.affinity``).

Cookie affinity when the client has no cookie yet (Envoy generates one when a TTL is configured):
the request is balanced without a hash key, then the sidecar sets ``session_cookie(affinity,
picked)``. Its value is ``endpoint_token(picked.key)``; the hashing balancers map that token straight
back to the endpoint while it is in the set, and hash it onto the ring or table like any other key
once it is gone, so a session moves once and then sticks again.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from lb.endpoint import Endpoint
from lb.hashing import endpoint_token

AffinityKind = Literal["header", "cookie", "source_ip"]
AFFINITY_KINDS: tuple[AffinityKind, ...] = ("header", "cookie", "source_ip")

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # RFC 9110 token: header and cookie names
_COOKIE_PATH = re.compile(r"^/[^;\x00-\x1f\x7f]*$")


@dataclass(frozen=True, slots=True)
class Affinity:
    """Where the session key comes from: a request header, a cookie, or the client's source IP.

    ``name`` is the header or cookie name (empty for ``source_ip``). ``cookie_ttl_s`` is Envoy's
    cookie ``ttl``: ``None`` means a missing cookie is not generated; ``0`` generates a session
    cookie (no Max-Age); a positive value sets ``Max-Age``.
    """

    kind: AffinityKind
    name: str = ""
    cookie_ttl_s: float | None = None
    cookie_path: str = "/"

    def validate(self, path: str = "lb.affinity") -> Affinity:
        """Raise ``ValueError`` naming the field when the settings are unusable; return self."""
        if self.kind not in AFFINITY_KINDS:
            raise ValueError(
                f"{path}.kind: unknown affinity {self.kind!r} (expected one of {', '.join(AFFINITY_KINDS)})"
            )
        if self.kind == "source_ip":
            if self.name:
                raise ValueError(f"{path}.name: not used by source_ip affinity, got {self.name!r}")
        elif not _TOKEN.match(self.name):
            raise ValueError(
                f"{path}.name: a {self.kind} name is required (a token like 'x-session'), got {self.name!r}"
            )
        if self.kind != "cookie":
            if self.cookie_ttl_s is not None:
                raise ValueError(f"{path}.cookie_ttl_s: only cookie affinity generates cookies")
            return self
        if self.cookie_ttl_s is not None:
            ttl = self.cookie_ttl_s
            if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not math.isfinite(ttl) or ttl < 0:
                raise ValueError(f"{path}.cookie_ttl_s: must be a number >= 0 or null, got {ttl!r}")
        if not _COOKIE_PATH.match(self.cookie_path):
            raise ValueError(f"{path}.cookie_path: must start with '/' and hold no ';', got {self.cookie_path!r}")
        return self


def affinity_hash_key(
    affinity: Affinity, headers: Mapping[str, str], cookies: Mapping[str, str], source_ip: str
) -> bytes | None:
    """The request's hash key for ``PickContext.hash_key``, or None when the request carries none.

    ``headers`` must be keyed by lower-case names (HTTP names are case-insensitive).
    """
    if affinity.kind == "header":
        value = headers.get(affinity.name.lower())
    elif affinity.kind == "cookie":
        value = cookies.get(affinity.name)
    else:
        value = source_ip
    return value.encode() if value else None


@dataclass(frozen=True, slots=True)
class SessionCookie:
    """A generated affinity cookie: set it on the response, and later requests stick to the endpoint."""

    name: str
    value: str
    path: str
    max_age_s: int | None

    @property
    def hash_key(self) -> bytes:
        """The hash key later requests will carry (what ``affinity_hash_key`` returns for them)."""
        return self.value.encode()

    def set_cookie_header(self) -> str:
        """The ``Set-Cookie`` header value; HttpOnly because the token is for the proxy only."""
        parts = [f"{self.name}={self.value}", f"Path={self.path}"]
        if self.max_age_s is not None:
            parts.append(f"Max-Age={self.max_age_s}")
        parts.append("HttpOnly")
        return "; ".join(parts)


def session_cookie(affinity: Affinity, endpoint: Endpoint) -> SessionCookie | None:
    """The cookie to set after picking ``endpoint`` for a request that had no affinity cookie.

    None unless the affinity is cookie-based with a TTL configured (Envoy generates nothing without one).
    """
    if affinity.kind != "cookie" or affinity.cookie_ttl_s is None:
        return None
    max_age = None if affinity.cookie_ttl_s == 0 else max(1, math.ceil(affinity.cookie_ttl_s))
    return SessionCookie(affinity.name, endpoint_token(endpoint.key), affinity.cookie_path, max_age)
