"""Workload identities as SPIFFE IDs: ``spiffe://<trust-domain>/ns/<namespace>/sa/<service>`` (pure).

The shape is Istio's (``sa`` is the Kubernetes service account; here it is the service name a
sidecar registers with). Syntax follows the SPIFFE ID standard: the trust domain is lower-case
letters, digits, ``.``, ``-`` and ``_``; path segments are letters, digits, ``.``, ``-`` and
``_``, never empty, ``.`` or ``..``; no port, user info, query or fragment. Errors say which
part is wrong and why. Istio writes principals without the scheme
(``cluster.local/ns/default/sa/sleep``): ``principal`` gives that form.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SCHEME = "spiffe://"
DEFAULT_TRUST_DOMAIN = "cluster.local"
MAX_ID_LENGTH = 2048
MAX_TRUST_DOMAIN_LENGTH = 255

_TRUST_DOMAIN = re.compile(r"[a-z0-9._-]+")
_SEGMENT = re.compile(r"[A-Za-z0-9._-]+")


class IdentityError(ValueError):
    """An invalid SPIFFE ID; ``part`` names the piece at fault (``trust domain``, ``namespace``...)."""

    def __init__(self, part: str, message: str) -> None:
        super().__init__(f"{part}: {message}")
        self.part = part
        self.message = message


@dataclass(frozen=True, slots=True)
class SpiffeId:
    trust_domain: str
    namespace: str
    service: str

    def __post_init__(self) -> None:
        check_trust_domain(self.trust_domain)
        check_segment(self.namespace, "namespace")
        check_segment(self.service, "service account")

    @property
    def uri(self) -> str:
        return f"{SCHEME}{self.trust_domain}/ns/{self.namespace}/sa/{self.service}"

    @property
    def principal(self) -> str:
        """Istio's principal: the ID without ``spiffe://`` (what ``source.principals`` names)."""
        return f"{self.trust_domain}/ns/{self.namespace}/sa/{self.service}"

    def __str__(self) -> str:
        return self.uri


def check_trust_domain(value: str) -> str:
    if not value:
        raise IdentityError("trust domain", "must not be empty")
    if len(value) > MAX_TRUST_DOMAIN_LENGTH:
        raise IdentityError("trust domain", f"is longer than {MAX_TRUST_DOMAIN_LENGTH} characters")
    if not _TRUST_DOMAIN.fullmatch(value):
        raise IdentityError(
            "trust domain", f"{value!r} may hold only lower-case letters, digits, '.', '-' and '_' (no port, no '@')"
        )
    return value


def check_segment(value: str, part: str) -> str:
    if not value:
        raise IdentityError(part, "must not be empty")
    if value in (".", ".."):
        raise IdentityError(part, f"{value!r} is not allowed as a path segment")
    if not _SEGMENT.fullmatch(value):
        raise IdentityError(part, f"{value!r} may hold only letters, digits, '.', '-' and '_'")
    return value


def parse_spiffe_id(text: str) -> SpiffeId:
    """``spiffe://td/ns/NS/sa/SA`` to a ``SpiffeId``; ``IdentityError`` names the part at fault."""
    if len(text) > MAX_ID_LENGTH:
        raise IdentityError("id", f"is longer than {MAX_ID_LENGTH} bytes")
    scheme, sep, rest = text.partition("://")
    if not sep:
        raise IdentityError("scheme", f"{text!r} does not start with spiffe://")
    if scheme != "spiffe":
        raise IdentityError("scheme", f"must be 'spiffe' (lower case), got {scheme!r}")
    for char, what in (("?", "a query"), ("#", "a fragment")):
        if char in rest:
            raise IdentityError("id", f"must not carry {what} ({char!r})")
    trust_domain, slash, path = rest.partition("/")
    if "@" in trust_domain:
        raise IdentityError("trust domain", "must not carry user info ('@')")
    if ":" in trust_domain:
        raise IdentityError("trust domain", "must not carry a port (':')")
    check_trust_domain(trust_domain)
    if not slash or not path:
        raise IdentityError("path", "is missing: a workload ID is spiffe://<trust-domain>/ns/<namespace>/sa/<service>")
    segments = path.split("/")
    for segment in segments:
        if segment == "" or segment in (".", ".."):
            raise IdentityError("path", f"has an empty, '.' or '..' segment in {'/' + path!r}")
    if len(segments) != 4 or segments[0] != "ns" or segments[2] != "sa":
        raise IdentityError("path", f"must be /ns/<namespace>/sa/<service>, got {'/' + path!r}")
    return SpiffeId(
        trust_domain, check_segment(segments[1], "namespace"), check_segment(segments[3], "service account")
    )


def parse_principal(text: str) -> SpiffeId:
    """Istio's principal form (``cluster.local/ns/default/sa/sleep``), or a full SPIFFE ID."""
    return parse_spiffe_id(text if text.startswith(SCHEME) else SCHEME + text)


def workload_id(trust_domain: str, namespace: str, service: str) -> SpiffeId:
    """The identity of a service's workloads in a namespace (errors name the part at fault)."""
    return SpiffeId(trust_domain, namespace, service)


__all__ = [
    "DEFAULT_TRUST_DOMAIN",
    "SCHEME",
    "IdentityError",
    "SpiffeId",
    "check_segment",
    "check_trust_domain",
    "parse_principal",
    "parse_spiffe_id",
    "workload_id",
]
