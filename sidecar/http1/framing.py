"""HTTP/1.1 framing decisions for a proxy, as pure functions over parsed heads (no I/O).

Rules (RFC 9112 §6, RFC 9110 §7.6), stated once here and applied by ``request_head`` and
``response_plan``:

- A request body is framed by ``Transfer-Encoding: chunked`` or by one ``Content-Length``,
  never both: a request carrying both, two ``Content-Length`` fields, a comma list, a
  ``Transfer-Encoding`` on HTTP/1.0, or a coding list that is not exactly ``chunked`` is refused
  (400; 501 for an unknown coding). These are the request-smuggling shapes: front and back ends
  that disagree on where a body ends.
- Hop-by-hop fields (``Connection`` and every field it names, ``Keep-Alive``,
  ``Proxy-Connection``, ``TE``, ``Transfer-Encoding``, ``Upgrade``, ``Proxy-Authenticate``,
  ``Proxy-Authorization``) stop at the proxy; the proxy writes its own framing on each hop.
  ``Upgrade`` and ``Connection: upgrade`` pass only on an upgrade request (WebSocket).
- Only HTTP/1.0 and HTTP/1.1 are spoken (505 otherwise). The upstream hop is always HTTP/1.1.
- A response to HEAD, a 1xx, 204 or 304 has no body. Otherwise chunked, then Content-Length,
  then "until the upstream closes". Towards an HTTP/1.1 client an unsized body is re-chunked
  (the client connection survives); towards HTTP/1.0 it is sent as is and the connection closes.

The proxy's own choices (add ``X-Forwarded-For``, generate ``x-request-id``) are made when the
head is serialised (``sidecar.http1.wire``); this module only classifies.
"""

from __future__ import annotations

import re

CRLF = b"\r\n"


class Body:
    """How a message body is delimited on a hop.

    Plain int constants, not an Enum: reading an Enum member costs ~0.15 µs in CPython 3.11,
    and the per-request path reads these a dozen times.
    """

    NONE = 0
    LENGTH = 1
    CHUNKED = 2
    UNTIL_CLOSE = 3


class HttpError(Exception):
    """A request the proxy refuses, with the status and a short reason for the client."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class UpstreamProtocolError(Exception):
    """The upstream answered something that is not valid HTTP/1.1 (the client gets 502)."""


# Lower-case field names the proxy consumes or replaces on the request hop.
_CONNECTION = b"connection"
_CONTENT_LENGTH = b"content-length"
_TRANSFER_ENCODING = b"transfer-encoding"
_HOST = b"host"
_UPGRADE = b"upgrade"
_EXPECT = b"expect"
_X_FORWARDED_FOR = b"x-forwarded-for"
_X_REQUEST_ID = b"x-request-id"
_X_FORWARDED_PROTO = b"x-forwarded-proto"

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authenticate",
        b"proxy-authorization",
    }
)

# Field kinds for the single pass over request fields (dict lookup by lower-case name).
_K_CONNECTION = 1
_K_CONTENT_LENGTH = 2
_K_TRANSFER_ENCODING = 3
_K_HOST = 4
_K_UPGRADE = 5
_K_EXPECT = 6
_K_XFF = 7
_K_REQUEST_ID = 8
_K_HOP = 9
_K_PROTO = 10
_K_TRACE = 11  # a trace context (W3C or B3): kept, and the sidecar starts no trace of its own
_REQUEST_KINDS = {
    _CONNECTION: _K_CONNECTION,
    _CONTENT_LENGTH: _K_CONTENT_LENGTH,
    _TRANSFER_ENCODING: _K_TRANSFER_ENCODING,
    _HOST: _K_HOST,
    _UPGRADE: _K_UPGRADE,
    _EXPECT: _K_EXPECT,
    _X_FORWARDED_FOR: _K_XFF,
    _X_REQUEST_ID: _K_REQUEST_ID,
    _X_FORWARDED_PROTO: _K_PROTO,
    b"traceparent": _K_TRACE,
    b"b3": _K_TRACE,
    b"x-b3-traceid": _K_TRACE,
    b"keep-alive": _K_HOP,
    b"proxy-connection": _K_HOP,
    b"te": _K_HOP,
    b"proxy-authenticate": _K_HOP,
    b"proxy-authorization": _K_HOP,
}

_OWS = b" \t"
MAX_CONTENT_LENGTH_DIGITS = 18  # below 2**63


class RequestHead:
    """A request as the proxy forwards it: identity, routing inputs and body framing.

    ``headers`` are the end-to-end fields in arrival order and spelling, without hop-by-hop
    fields, ``Host`` (kept in ``host``), ``X-Forwarded-For`` (its value in ``forwarded_for``) and
    ``Content-Length``/``Transfer-Encoding`` (in ``body``/``content_length``).
    """

    __slots__ = (
        "body",
        "content_length",
        "expect_continue",
        "forwarded_for",
        "forwarded_proto",
        "headers",
        "host",
        "keep_alive",
        "method",
        "path",
        "query",
        "request_id",
        "target",
        "traced",
        "upgrade",
        "version",
    )

    def __init__(
        self,
        method: bytes,
        target: bytes,
        path: str,
        query: str,
        host: bytes,
        version: bytes,
        headers: list[tuple[bytes, bytes]],
        body: int,
        content_length: int,
        keep_alive: bool,
        upgrade: bytes | None,
        expect_continue: bool,
        forwarded_for: bytes | None,
        forwarded_proto: bool,
        request_id: bytes | None,
        traced: bool = False,
    ) -> None:
        self.method = method
        self.target = target
        self.path = path
        self.query = query
        self.host = host
        self.version = version
        self.headers = headers
        self.body = body
        self.content_length = content_length
        self.keep_alive = keep_alive
        self.upgrade = upgrade
        self.expect_continue = expect_continue
        self.forwarded_for = forwarded_for
        self.forwarded_proto = forwarded_proto
        self.request_id = request_id
        self.traced = traced  # a traceparent or B3 field came with the request

    def header(self, name: bytes) -> bytes | None:
        """The first end-to-end field called ``name`` (lower-case), joined if repeated; None if absent."""
        values = [v for n, v in self.headers if n.lower() == name]
        if not values:
            return None
        return values[0] if len(values) == 1 else b",".join(values)

    def headers_str(self) -> dict[str, str]:
        """End-to-end fields as a lower-case ``str`` dict (repeats joined with ``,``), for matching."""
        out: dict[str, str] = {}
        for name, value in self.headers:
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            out[key] = f"{out[key]},{text}" if key in out else text
        return out


def split_tokens(value: bytes) -> list[bytes]:
    """Comma-separated tokens, trimmed and lower-cased, empties dropped (``Connection``, TE)."""
    return [t for t in (part.strip(_OWS).lower() for part in value.split(b",")) if t]


def parse_content_length(value: bytes) -> int:
    """A Content-Length value: 1*DIGIT only (no sign, no list, no spaces inside)."""
    text = value.strip(_OWS)
    if not text.isdigit() or len(text) > MAX_CONTENT_LENGTH_DIGITS:  # bytes.isdigit: ASCII 0-9 only
        raise HttpError(400, "invalid Content-Length")
    return int(text)


def split_target(target: bytes) -> tuple[bytes, bytes | None]:
    """Request target → (origin-form target, authority from absolute-form or None).

    ``http://svc:8080/a?b`` → (``/a?b``, ``svc:8080``); ``/a?b`` → (``/a?b``, None).
    Authority-form (CONNECT) and ``*`` (OPTIONS) are returned unchanged with no authority.
    """
    if target[:1] == b"/" or target == b"*":
        return target, None
    lowered = target[:8].lower()
    if lowered.startswith(b"http://"):
        rest = target[7:]
    elif lowered.startswith(b"https://"):
        rest = target[8:]
    else:
        return target, None
    slash = len(rest)
    for sep in (b"/", b"?"):
        at = rest.find(sep)
        if at != -1 and at < slash:
            slash = at
    authority = rest[:slash]
    if b"@" in authority:  # userinfo is not allowed in http(s) URIs sent to a proxy (RFC 9110 §4.2.4)
        raise HttpError(400, "userinfo in request target")
    if not authority:
        raise HttpError(400, "empty authority in request target")
    path = rest[slash:]
    if not path or path[:1] == b"?":
        path = b"/" + path
    return path, authority


def request_head(method: bytes, target: bytes, version: bytes, raw_headers: list[tuple[bytes, bytes]]) -> RequestHead:
    """Classify a parsed request head; raise ``HttpError`` for anything the proxy refuses."""
    if version != b"1.1" and version != b"1.0":
        raise HttpError(505, "HTTP version not supported")
    if method == b"CONNECT":
        raise HttpError(405, "CONNECT is not supported by this proxy")
    headers: list[tuple[bytes, bytes]] = []
    host: bytes | None = None
    content_length = -1
    transfer_codings: list[bytes] | None = None
    connection_tokens: list[bytes] = []
    upgrade: bytes | None = None
    expect_continue = False
    forwarded_for: bytes | None = None
    forwarded_proto = False
    request_id: bytes | None = None
    traced = False
    kinds = _REQUEST_KINDS
    for item in raw_headers:
        kind = kinds.get(item[0].lower())
        if kind is None:
            headers.append(item)
            continue
        value = item[1]
        if kind == _K_HOST:
            if host is not None:
                raise HttpError(400, "more than one Host field")
            host = value.strip(_OWS)
        elif kind == _K_CONTENT_LENGTH:
            if content_length != -1:
                raise HttpError(400, "more than one Content-Length field")
            content_length = parse_content_length(value)
        elif kind == _K_TRANSFER_ENCODING:
            transfer_codings = (transfer_codings or []) + split_tokens(value)
        elif kind == _K_CONNECTION:
            connection_tokens.extend(split_tokens(value))
        elif kind == _K_UPGRADE:
            upgrade = value.strip(_OWS)
        elif kind == _K_EXPECT:
            if value.strip(_OWS).lower() == b"100-continue":
                expect_continue = True
            else:
                raise HttpError(417, "only Expect: 100-continue is supported")
        elif kind == _K_XFF:
            forwarded_for = value if forwarded_for is None else forwarded_for + b", " + value
        elif kind == _K_REQUEST_ID:
            request_id = value
            headers.append(item)
        elif kind == _K_PROTO:
            forwarded_proto = True
            headers.append(item)
        elif kind == _K_TRACE:
            traced = True
            headers.append(item)
        # _K_HOP: dropped

    if connection_tokens:
        named = {t for t in connection_tokens if t not in (b"close", b"keep-alive", b"upgrade")}
        if named:
            headers = [h for h in headers if h[0].lower() not in named]

    body = Body.NONE
    if transfer_codings is not None:
        if content_length != -1:
            raise HttpError(400, "both Transfer-Encoding and Content-Length")
        if version == b"1.0":
            raise HttpError(400, "Transfer-Encoding on HTTP/1.0")
        if not transfer_codings or transfer_codings[-1] != b"chunked" or transfer_codings.count(b"chunked") > 1:
            raise HttpError(400, "invalid Transfer-Encoding")
        if len(transfer_codings) > 1:
            raise HttpError(501, "transfer coding not implemented")
        body = Body.CHUNKED
        content_length = -1
    elif content_length > 0:
        body = Body.LENGTH
    elif content_length == -1:
        content_length = 0

    if target[:1] == b"/":
        path_target = target
    else:
        path_target, authority = split_target(target)
        if authority is not None:
            host = authority  # absolute-form wins over Host (RFC 9112 §3.2.2)
    if host is None:
        if version == b"1.1":
            raise HttpError(400, "missing Host field")
        host = b""

    if version == b"1.1":
        keep_alive = b"close" not in connection_tokens
    else:
        keep_alive = b"keep-alive" in connection_tokens and b"close" not in connection_tokens

    if upgrade is not None:
        if b"upgrade" in connection_tokens and version == b"1.1":
            if body != Body.NONE:
                raise HttpError(400, "upgrade request with a body")
        else:
            upgrade = None  # Upgrade without Connection: upgrade is hop-by-hop noise

    query_at = path_target.find(b"?")
    if query_at == -1:
        path = path_target.decode("latin-1")
        query = ""
    else:
        path = path_target[:query_at].decode("latin-1")
        query = path_target[query_at + 1 :].decode("latin-1")
    return RequestHead(
        method,
        path_target,
        path,
        query,
        host,
        version,
        headers,
        body,
        content_length,
        keep_alive,
        upgrade,
        expect_continue,
        forwarded_for,
        forwarded_proto,
        request_id,
        traced,
    )


class ResponseHead:
    """An upstream response as the proxy relays it.

    ``fields`` is the upstream's field block as raw bytes (each field as ``\r\nName: value``,
    no final CRLF), already stripped of hop-by-hop fields. With ``raw_body`` the body bytes are
    relayed exactly as received (the framing fields stay in ``fields``); otherwise the decoded
    body is re-framed as ``body_out`` says.
    """

    __slots__ = (
        "body_in",
        "body_out",
        "content_length",
        "fields",
        "keep_alive_down",
        "raw_body",
        "reason",
        "reuse_up",
        "status",
    )

    def __init__(
        self,
        status: int,
        reason: bytes,
        fields: bytes,
        body_in: int,
        body_out: int,
        content_length: int,
        keep_alive_down: bool,
        reuse_up: bool,
        raw_body: bool,
    ) -> None:
        self.status = status
        self.reason = reason
        self.fields = fields
        self.body_in = body_in
        self.body_out = body_out
        self.content_length = content_length
        self.keep_alive_down = keep_alive_down
        self.reuse_up = reuse_up
        self.raw_body = raw_body


# Hop-by-hop response fields, matched as whole lines of the raw field block. Content-Length and
# Transfer-Encoding are not here: when the body is relayed raw its framing fields stay as they are.
_HOP_LINE = re.compile(
    rb"\r\n(?:connection|keep-alive|proxy-connection|te|upgrade|proxy-authenticate|proxy-authorization)"
    rb"[ \t]*:[^\r]*",
    re.IGNORECASE,
)
# Names that start a line of the lower-cased block. Transfer-Encoding must be the whole name (it decides
# the framing); the hop-by-hop ones are a superset (``\r\nte`` also finds ``\r\ntext``) that
# ``_HOP_LINE`` then matches exactly.
_RARE_NAMES = re.compile(rb"\r\n(transfer-encoding(?=:)|keep-alive|proxy-|te|upgrade)")
_TE = b"transfer-encoding"
_FRAMING_LINE = re.compile(rb"\r\n(?:content-length|transfer-encoding)[ \t]*:[^\r]*", re.IGNORECASE)


def field_values(fields: bytes, lowered: bytes, name: bytes) -> list[bytes]:
    """Values of every field ``name`` (lower-case) in a raw field block (``lowered`` is ``fields.lower()``)."""
    values: list[bytes] = []
    marker = b"\r\n" + name
    at = lowered.find(marker)
    while at != -1:
        colon = at + len(marker)
        rest = lowered[colon : colon + 1]
        # The name must end here: optional whitespace then the colon (llhttp refuses whitespace).
        if rest == b":":
            end = fields.find(b"\r\n", colon)
            values.append(fields[colon + 1 : end if end != -1 else len(fields)].strip(_OWS))
        at = lowered.find(marker, colon)
    return values


def remove_fields(fields: bytes, names: frozenset[bytes]) -> bytes:
    """The field block without the fields whose lower-case names are in ``names``."""
    if not names:
        return fields
    kept = [line for line in fields.split(b"\r\n") if line and line.split(b":", 1)[0].strip(_OWS).lower() not in names]
    return b"".join(b"\r\n" + line for line in kept)


def parse_fields(fields: bytes) -> list[tuple[bytes, bytes]]:
    """A raw field block as (name, value) pairs (for tests and rare slow paths)."""
    pairs = []
    for line in fields.split(b"\r\n"):
        if line:
            name, _, value = line.partition(b":")
            pairs.append((name, value.strip(_OWS)))
    return pairs


def response_head(
    status: int,
    reason: bytes,
    fields: bytes,
    *,
    request_method: bytes,
    upstream_keep_alive: bool,
    client_version: bytes,
    client_keep_alive: bool,
    upgrade: bool,
) -> ResponseHead:
    """Classify a final upstream response and decide the framing towards the client.

    ``fields`` is the raw field block after the status line (``\r\nName: value`` repeated).
    ``upstream_keep_alive`` is the parser's verdict on the upstream connection (its
    ``Connection`` field and version). ``upgrade`` means a 101 to an upgrade request: the
    fields ``Connection``/``Upgrade`` are kept and both connections become a tunnel.

    The body is relayed raw (no re-framing) unless a chunked body goes to an HTTP/1.0 client,
    which cannot read chunks: then it is decoded and the connection closes after it.
    """
    lowered = fields.lower()
    if upgrade:
        named = _connection_named(fields, lowered)
        kept = _HOP_LINE.sub(b"", fields) if not named else remove_fields(fields, HOP_BY_HOP | named)
        upgrade_values = field_values(fields, lowered, _UPGRADE)
        extra = b"\r\nConnection: upgrade" + b"".join(b"\r\nUpgrade: " + v for v in upgrade_values)
        kept = _FRAMING_LINE.sub(b"", kept) + extra
        return ResponseHead(status, reason, kept, Body.NONE, Body.NONE, -1, False, False, True)

    # llhttp has already refused duplicate or malformed Content-Length and CL with TE, so the
    # framing fields are read from the block as received.
    content_length = -1
    at = lowered.find(b"\r\ncontent-length:")
    if at != -1:
        end = lowered.find(b"\r\n", at + 17)
        try:
            content_length = parse_content_length(fields[at + 17 : end if end != -1 else len(fields)])
        except HttpError:
            raise UpstreamProtocolError("invalid Content-Length in the response") from None
    chunked = False
    rare = _RARE_NAMES.findall(lowered)  # usually empty: one scan instead of five substring searches
    te_seen = _TE in rare
    if te_seen:
        codings: list[bytes] = []
        for value in field_values(fields, lowered, _TRANSFER_ENCODING):
            codings += split_tokens(value)
        chunked = bool(codings) and codings[-1] == b"chunked"

    # Hop-by-hop fields. The usual case is one "Connection: keep-alive" line, cut out directly;
    # anything else (Keep-Alive, Proxy-*, names listed in Connection) goes through the slow path.
    at = lowered.find(b"\r\nconnection:")
    if at != -1:
        end = lowered.find(b"\r\n", at + 13)
        if end == -1:
            end = len(lowered)
        single = lowered.find(b"\r\nconnection:", end) == -1
        if single and lowered[at + 13 : end].strip(_OWS) in _KNOWN_CONNECTION_TOKENS:
            fields = fields[:at] + fields[end:]
        else:
            fields = remove_fields(fields, (HOP_BY_HOP - _FRAMING) | _connection_named(fields, lowered))
    if rare and (not te_seen or len(rare) > rare.count(_TE)):
        fields = _HOP_LINE.sub(b"", fields)

    if request_method == b"HEAD" or status == 204 or status == 304 or status < 200:
        body_in = Body.NONE
    elif te_seen:
        body_in = Body.CHUNKED if chunked else Body.UNTIL_CLOSE
        content_length = -1
    elif content_length != -1:
        body_in = Body.LENGTH
    else:
        body_in = Body.UNTIL_CLOSE

    keep_alive_down = client_keep_alive
    raw = True
    body_out = body_in
    if body_in == Body.UNTIL_CLOSE:
        keep_alive_down = False  # the body ends when a connection closes: the client's too
    elif body_in == Body.CHUNKED and client_version != b"1.1":
        # An HTTP/1.0 client cannot read chunks: decode, drop the framing fields, close after.
        raw = False
        body_out = Body.UNTIL_CLOSE
        keep_alive_down = False
        fields = _FRAMING_LINE.sub(b"", fields)
    reuse_up = upstream_keep_alive and body_in != Body.UNTIL_CLOSE
    return ResponseHead(status, reason, fields, body_in, body_out, content_length, keep_alive_down, reuse_up, raw)


_FRAMING = frozenset({_CONTENT_LENGTH, _TRANSFER_ENCODING})
_KNOWN_CONNECTION_TOKENS = frozenset({b"close", b"keep-alive", b"upgrade"})
_NOTHING: frozenset[bytes] = frozenset()


def _connection_named(fields: bytes, lowered: bytes) -> frozenset[bytes]:
    """Field names listed in ``Connection`` (besides close/keep-alive/upgrade): hop-by-hop too."""
    at = lowered.find(b"\r\nconnection:")
    if at == -1:
        return _NOTHING
    end = lowered.find(b"\r\n", at + 13)
    if lowered[at + 13 : end if end != -1 else len(lowered)].strip(_OWS) in _KNOWN_CONNECTION_TOKENS and (
        lowered.find(b"\r\nconnection:", at + 13) == -1
    ):
        return _NOTHING  # the usual single "Connection: keep-alive" (or close)
    tokens: set[bytes] = set()
    for value in field_values(fields, lowered, _CONNECTION):
        tokens.update(split_tokens(value))
    return frozenset(tokens - _KNOWN_CONNECTION_TOKENS)
