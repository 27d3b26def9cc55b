"""TLS termination for HTTPS listeners (a gateway's HTTPS servers): certificates from PEM files, picked by SNI.

``load_certificates`` reads every certificate of a listener when a snapshot is applied, so a
missing or unreadable file, or a key that does not match its certificate, rejects the snapshot
(NACK) naming the file, and the old config keeps serving. ``TlsTermination`` is the listener's
server context: a client's SNI picks the certificate whose ``server_names`` match it (exact, then
``*.suffix``, then ``*``); without SNI, or with an unknown name, the first certificate is used.
A new snapshot with other certificates for the same listener swaps them for new handshakes
(connections already open keep theirs). TLS 1.2 at least; ALPN offers ``http/1.1``; a
certificate with ``ca_file`` requires client certificates chaining to it (Istio's ``MUTUAL``).
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence

from mesh.model.snapshot import ServerCertificate

Loaded = tuple[tuple[ServerCertificate, ssl.SSLContext], ...]


class TlsLoadError(ValueError):
    """A certificate, key or CA file that cannot be used (the message names it and says why)."""


def load_certificates(certificates: Sequence[ServerCertificate]) -> Loaded:
    return tuple((certificate, _context(certificate)) for certificate in certificates)


def _context(certificate: ServerCertificate) -> ssl.SSLContext:
    for path in (certificate.cert_file, certificate.key_file, certificate.ca_file):
        if path:
            _check_readable(path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    try:
        context.load_cert_chain(certificate.cert_file, certificate.key_file)
    except (ssl.SSLError, OSError) as exc:
        raise TlsLoadError(
            f"certificate {certificate.cert_file} with key {certificate.key_file}: {_reason(exc)}"
        ) from exc
    if certificate.ca_file:
        try:
            context.load_verify_locations(certificate.ca_file)
        except (ssl.SSLError, OSError) as exc:
            raise TlsLoadError(f"CA certificates {certificate.ca_file}: {_reason(exc)}") from exc
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _check_readable(path: str) -> None:
    try:
        with open(path, "rb"):
            pass
    except FileNotFoundError:
        raise TlsLoadError(f"cannot read {path}: no such file") from None
    except PermissionError:
        raise TlsLoadError(f"cannot read {path}: permission denied") from None
    except OSError as exc:
        raise TlsLoadError(f"cannot read {path}: {exc.strerror or exc}") from None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return f"not a usable PEM certificate and matching key ({exc.reason})"
    return str(exc) or type(exc).__name__


def match_rank(name: str, pattern: str) -> int:
    """How ``pattern`` (``host``, ``*.suffix``, ``*``) matches an SNI ``name``: 3 exact, 2 wildcard, 1 ``*``, 0 not."""
    if pattern == name:
        return 3
    if pattern.startswith("*.") and name.endswith(pattern[1:]) and name != pattern[2:]:
        return 2
    return 1 if pattern == "*" else 0


class TlsTermination:
    def __init__(self, loaded: Loaded) -> None:
        self._loaded = loaded
        self.context = loaded[0][1]  # the listener's context: its SNI callback hands over to the others
        self.context.sni_callback = self._pick

    def update(self, loaded: Loaded) -> None:
        """New certificates for new handshakes (a client without SNI gets the new first one too)."""
        self._loaded = loaded
        first = loaded[0][0]
        self.context.load_cert_chain(first.cert_file, first.key_file)

    def _pick(self, sslobj: ssl.SSLObject, name: str | None, _context: ssl.SSLContext) -> None:
        if not name:
            return
        lowered = name.lower()
        best, best_rank = None, 0
        for certificate, context in self._loaded:
            rank = max((match_rank(lowered, pattern) for pattern in certificate.server_names), default=0)
            if rank > best_rank:
                best, best_rank = context, rank
        if best is not None and best is not sslobj.context:
            sslobj.context = best
        return


__all__ = ["Loaded", "TlsLoadError", "TlsTermination", "load_certificates", "match_rank"]
