"""Bytes on the wire: request and response heads, chunk framing, the proxy's own answers.

Pure functions; the hot path builds each head with one ``b"".join``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from http import HTTPStatus

from sidecar.http1.framing import Body, RequestHead, ResponseHead, remove_fields

CRLF = b"\r\n"
LAST_CHUNK = b"0\r\n\r\n"
_SEP = b": "

_REASONS = {status.value: status.phrase.encode("latin-1") for status in HTTPStatus}


def reason_phrase(status: int) -> bytes:
    return _REASONS.get(status, b"Unknown")


class _RandomIds:
    """Random ids made ``_BATCH`` at a time from one ``os.urandom`` call; a request pops one."""

    __slots__ = ("_ready",)

    _BATCH = 256

    def __init__(self) -> None:
        self._ready: list[bytes] = []

    def next(self) -> bytes:
        ready = self._ready
        if not ready:
            ready = self._ready = self._batch()
        return ready.pop()

    def _batch(self) -> list[bytes]:
        raise NotImplementedError


class RequestIds(_RandomIds):
    """UUID4-shaped ``x-request-id`` values (as Envoy generates), cheap per request.

    The hex digits of a batch are laid into the ``8-4-4-4-12`` layout column by column with strided
    slice assignments (32 C-level copies per batch instead of formatting each id), then split.
    """

    __slots__ = ()

    _WIDTH = 37  # 36 characters and a separator
    _VARIANT = bytes.maketrans(b"0123456789abcdef", b"89ab89ab89ab89ab")  # RFC 4122 variant digit
    # Where each of the 32 hex digits goes in the 36-character id (dashes at 8, 13, 18, 23).
    _COLUMNS = (*range(0, 8), *range(9, 13), *range(14, 18), *range(19, 23), *range(24, 36))

    def _batch(self) -> list[bytes]:
        n, width = self._BATCH, self._WIDTH
        digits = os.urandom(16 * n).hex().encode("ascii")
        out = bytearray(b"-" * (width * n))
        for source, column in enumerate(self._COLUMNS):
            out[column::width] = digits[source::32]
        out[14::width] = b"4" * n  # version 4
        out[19::width] = digits[16::32].translate(self._VARIANT)
        out[36::width] = b"\n" * n
        return bytes(out).split(b"\n")[:n]


class TraceParents(_RandomIds):
    """W3C ``traceparent`` values for requests that arrive without a trace context.

    ``00-<32 hex trace id>-<16 hex span id>-01``: version 00, a random 16-byte trace id and
    8-byte parent (span) id, sampled.
    """

    __slots__ = ()

    _WIDTH = 56  # "00-" 32 hex "-" 16 hex "-01" and a separator
    _COLUMNS = (*range(3, 35), *range(36, 52))  # where the 48 random hex digits go
    _TEMPLATE = b"00-" + b"0" * 32 + b"-" + b"0" * 16 + b"-01\n"

    def _batch(self) -> list[bytes]:
        n, width = self._BATCH, self._WIDTH
        digits = os.urandom(24 * n).hex().encode("ascii")
        out = bytearray(self._TEMPLATE * n)
        for source, column in enumerate(self._COLUMNS):  # strided copies, as RequestIds does
            out[column::width] = digits[source::48]
        # An all-zero trace or span id is invalid (W3C): drop such a value (odds 2**-64 per id).
        return [v for v in bytes(out).split(b"\n")[:n] if v[3:35] != _ZERO_TRACE and v[36:52] != _ZERO_SPAN]


_ZERO_TRACE = b"0" * 32
_ZERO_SPAN = b"0" * 16


def request_head_bytes(
    head: RequestHead,
    host: bytes,
    target: bytes,
    extra: Sequence[tuple[bytes, bytes]],
    forwarded_for: bytes,
    request_id: bytes | None,
    remove: frozenset[bytes] = frozenset(),
) -> bytes:
    """The request head for the upstream hop (always HTTP/1.1, keep-alive).

    ``forwarded_for`` is the value of ``X-Forwarded-For`` to send (the client's chain plus its
    address); ``request_id`` is added only when the client sent none. ``extra`` fields are
    appended after the client's; ``remove`` drops client fields by lower-case name.
    """
    parts = [head.method, b" ", target, b" HTTP/1.1\r\nHost: ", host, CRLF]
    append = parts.append
    if remove:
        for name, value in head.headers:
            if name.lower() not in remove:
                parts += (name, _SEP, value, CRLF)
    else:
        for name, value in head.headers:
            parts += (name, _SEP, value, CRLF)
    for name, value in extra:
        parts += (name, _SEP, value, CRLF)
    parts += (b"X-Forwarded-For: ", forwarded_for, CRLF)
    if request_id is not None:
        parts += (b"x-request-id: ", request_id, CRLF)
    if not head.forwarded_proto:
        append(b"X-Forwarded-Proto: http\r\n")
    body = head.body
    if body == Body.LENGTH:
        parts += (b"Content-Length: ", b"%d" % head.content_length, CRLF)
    elif body == Body.CHUNKED:
        append(b"Transfer-Encoding: chunked\r\n")
    if head.upgrade is not None:
        parts += (b"Connection: upgrade\r\nUpgrade: ", head.upgrade, CRLF)
    if head.expect_continue:
        append(b"Expect: 100-continue\r\n")
    append(CRLF)
    return b"".join(parts)


def response_head_bytes(
    head: ResponseHead,
    extra: Sequence[tuple[bytes, bytes]] = (),
    remove: frozenset[bytes] = frozenset(),
    client_version: bytes = b"1.1",
) -> bytes:
    """The response head for the client hop: the upstream's fields (hop-by-hop ones already
    removed by ``framing``), route edits, and the connection fields chosen by ``framing``."""
    fields = remove_fields(head.fields, remove) if remove else head.fields
    parts = [b"HTTP/1.1 %d " % head.status, head.reason, fields]
    for name, value in extra:
        parts += (CRLF, name, _SEP, value)
    if head.status != 101:
        if not head.keep_alive_down:
            parts.append(b"\r\nConnection: close")
        elif client_version == b"1.0":
            parts.append(b"\r\nConnection: keep-alive")
    parts.append(b"\r\n\r\n")
    return b"".join(parts)


def interim_bytes(status: int, reason: bytes, fields: bytes) -> bytes:
    """A 1xx response (100 Continue, 103 Early Hints) relayed as received."""
    return b"HTTP/1.1 %d %b%b\r\n\r\n" % (status, reason, fields)


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body (``data`` must not be empty: an empty chunk ends the body)."""
    return b"%x\r\n%b\r\n" % (len(data), data)


def last_chunk(trailers: Sequence[tuple[bytes, bytes]] = ()) -> bytes:
    """The zero-size chunk that ends a chunked body, with trailer fields if any."""
    if not trailers:
        return LAST_CHUNK
    parts = [b"0\r\n"]
    for name, value in trailers:
        parts += (name, _SEP, value, CRLF)
    parts.append(CRLF)
    return b"".join(parts)


def error_response(
    status: int,
    message: str,
    *,
    close: bool,
    request_id: bytes | None = None,
    head_request: bool = False,
    headers: Sequence[tuple[str, str]] = (),
) -> bytes:
    """A small plain-text answer from the proxy itself (404, 502, 503, 504, 400, 431, redirects ...).

    To a HEAD request the head announces the body's length but the body is left out. ``headers``
    are extra fields (``x-mesh-overflow`` on a breaker's 503, ``Location`` on a redirect); their
    values come from validated config, never from the request.
    """
    body = message.encode("utf-8") + b"\n"
    parts = [
        b"HTTP/1.1 %d " % status,
        reason_phrase(status),
        b"\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n" % len(body),
    ]
    for name, value in headers:
        parts += (name.encode("latin-1"), b": ", value.encode("latin-1"), CRLF)
    if request_id is not None:
        parts += (b"x-request-id: ", request_id, CRLF)
    if close:
        parts.append(b"Connection: close\r\n")
    parts.append(CRLF)
    if not head_request:
        parts.append(body)
    return b"".join(parts)
