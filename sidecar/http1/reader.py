"""Sans-I/O readers: bytes in, typed callbacks out, around the httptools (llhttp) parser.

llhttp in its strict mode already refuses the request-smuggling shapes at the byte level
(Content-Length with Transfer-Encoding, duplicate Content-Length, bad chunk sizes, obsolete line
folding, whitespace before a colon, bare LF); ``framing.request_head`` checks the same rules
again on the parsed fields, so neither layer alone is trusted. What llhttp does not bound is
size: the readers count head bytes and field numbers themselves (431 / 502).

The readers never touch sockets: ``feed(data)`` drives the parser and calls the sink. Tests
feed them bytes directly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

import httptools

from sidecar.http1.framing import HttpError, RequestHead, UpstreamProtocolError, request_head

_VERSIONS = {"1.1": b"1.1", "1.0": b"1.0"}
_monotonic = time.monotonic


@dataclass(frozen=True, slots=True)
class HeadLimits:
    """Bounds on one message head (request line or status line plus fields), and on trailers."""

    max_head_bytes: int = 60 * 1024  # Envoy's max_request_headers_kb default
    max_fields: int = 100  # Envoy's max_headers_count default


class RequestSink(Protocol):
    """What a ``RequestReader`` reports, in order, for each request on a connection."""

    def on_request(self, head: RequestHead) -> None: ...
    def on_request_body(self, data: bytes) -> None: ...
    def on_request_end(self, trailers: list[tuple[bytes, bytes]] | None) -> None: ...


class RequestReader:
    """Parses a client connection's bytes into requests (pipelined ones too).

    ``feed`` returns the bytes that follow an upgrade request's head (the first bytes of the
    tunnel), or None. A malformed or oversized request raises ``HttpError``; the connection
    cannot be parsed further after that.
    """

    __slots__ = (
        "_head_bytes",
        "_headers",
        "_max_fields",
        "_max_head_bytes",
        "_parser",
        "_sink",
        "_started_now",
        "_url",
        "head_started_at",
        "in_head",
    )

    def __init__(self, sink: RequestSink, limits: HeadLimits) -> None:
        self._sink = sink
        self._max_head_bytes = limits.max_head_bytes
        self._max_fields = limits.max_fields
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        # The head's fields; after the head, a fresh list that collects trailers (rare).
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_bytes = 0
        self.in_head = False  # between a request's first byte and the end of its head
        self.head_started_at = 0.0  # when that first byte came (the header timeout runs from it)
        self._started_now = False

    def feed(self, data: bytes) -> bytes | None:
        self._started_now = False
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            return data[upgrade.args[0] :]
        except httptools.HttpParserCallbackError as exc:
            raise _unwrap(exc) from None
        except httptools.HttpParserError as exc:
            raise HttpError(400, f"malformed request: {exc}") from None
        if self.in_head and not self._started_now:
            # Bytes inside one unfinished field are invisible to the callbacks; count the reads.
            self._head_bytes += len(data)
            if self._head_bytes > self._max_head_bytes:
                raise HttpError(431, "request header fields too large")
        return None

    # --- httptools callbacks ---

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._head_bytes = 0
        self.in_head = True
        self.head_started_at = _monotonic()
        self._started_now = True

    def on_url(self, url: bytes) -> None:
        self._url = url if not self._url else self._url + url
        self._head_bytes += len(url)
        if self._head_bytes > self._max_head_bytes:
            raise HttpError(414 if len(self._url) > self._max_head_bytes // 2 else 431, "request head too large")

    def on_header(self, name: bytes, value: bytes) -> None:
        size = self._head_bytes = self._head_bytes + len(name) + len(value) + 4
        headers = self._headers
        if size > self._max_head_bytes or len(headers) >= self._max_fields:
            raise HttpError(431, "request header fields too large")
        headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.in_head = False
        parser = self._parser
        version = parser.get_http_version()
        head = request_head(parser.get_method(), self._url, _VERSIONS.get(version) or version.encode(), self._headers)
        self._head_bytes = 0
        self._headers = []  # trailers from here on (a chunked body may end with some), same limits
        self._sink.on_request(head)

    def on_body(self, data: bytes) -> None:
        self._sink.on_request_body(data)

    def on_message_complete(self) -> None:
        self._sink.on_request_end(self._headers or None)


class ResponseSink(Protocol):
    """What a ``ResponseReader`` reports for the response to one upstream request.

    ``on_response`` gets the raw field block and returns True to receive the body raw (bytes as
    they came, framing included) through ``on_response_raw``, False to receive it decoded
    through ``on_response_body``.
    """

    def on_interim(self, status: int, reason: bytes, fields: bytes) -> None: ...
    def on_response(self, status: int, reason: bytes, fields: bytes, keep_alive: bool) -> bool: ...
    def on_response_raw(self, data: bytes) -> None: ...
    def on_response_body(self, data: bytes) -> None: ...
    def on_response_end(self) -> None: ...


class ResponseReader:
    """Parses an upstream connection's bytes into responses, one per request sent.

    llhttp validates every byte and tracks the body's framing, but gets no per-field callbacks
    (they cost ~0.75 µs per field); the head is taken as raw bytes instead: a response starts
    right after ``expect`` (we never pipeline upstream), so its head is the bytes up to the first
    empty line, which is also where llhttp ends it (strict CRLF). The head's fields are then
    handled with bytes operations by ``framing.response_head``.

    Call ``expect(sink, head_request)`` before each request is written: a response to HEAD has
    no body whatever its Content-Length says, which the parser cannot know by itself, so the
    parser is replaced after such a response. ``feed`` returns tunnel bytes after a 101, else
    None; anything malformed raises ``UpstreamProtocolError``.
    """

    __slots__ = (
        "_acc",
        "_body_from",
        "_completed",
        "_head_request",
        "_limits",
        "_parser",
        "_raw",
        "_reset_after",
        "_scan",
        "_sink",
        "done",
    )

    def __init__(self, limits: HeadLimits) -> None:
        self._limits = limits
        self._parser = httptools.HttpResponseParser(self)
        self._sink: ResponseSink | None = None
        self._head_request = False
        self._acc = b""  # bytes of the current response's head(s) seen so far
        self._scan = 0  # where the next head starts in _acc (after a 1xx)
        self._body_from = -1  # offset in _acc where the body starts, once the head is complete
        self._raw = True
        self._completed = False
        self._reset_after = False
        self.done = True  # no response outstanding

    def expect(self, sink: ResponseSink, head_request: bool) -> None:
        self._sink = sink
        self._head_request = head_request
        self._acc = b""
        self._scan = 0
        self._body_from = -1
        self._completed = False
        self.done = False

    def feed(self, data: bytes) -> bytes | None:
        in_head = self._body_from < 0 and not self.done
        if in_head:
            acc = self._acc + data if self._acc else data
            self._acc = acc
            start = len(acc) - len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self._finish_feed(data, in_head, start if in_head else 0)
            return data[upgrade.args[0] :]
        except httptools.HttpParserCallbackError as exc:
            err = exc.__context__
            if isinstance(err, _StopParsing):
                self._finish_feed(data, in_head, start if in_head else 0)
                return None
            if isinstance(err, UpstreamProtocolError | HttpError):
                raise UpstreamProtocolError(str(err)) from None
            if err is not None:
                raise err from None
            raise UpstreamProtocolError(str(exc)) from None
        except httptools.HttpParserError as exc:
            raise UpstreamProtocolError(f"malformed response: {exc}") from None
        finally:
            if self._reset_after:
                self._reset_after = False
                self._parser = httptools.HttpResponseParser(self)
        self._finish_feed(data, in_head, start if in_head else 0)
        return None

    def _finish_feed(self, data: bytes, was_in_head: bool, start: int) -> None:
        """After llhttp has seen ``data``: hand over raw body bytes, then the end of the response."""
        sink = self._sink
        body_from = self._body_from
        if sink is not None and body_from >= 0 and self._raw:
            if was_in_head:
                piece = data[body_from - start :] if body_from > start else data
            else:
                piece = data
            if piece:
                sink.on_response_raw(piece)
        if self._body_from < 0 and not self.done and len(self._acc) > self._limits.max_head_bytes:
            raise UpstreamProtocolError("response head too large")
        if was_in_head and self._body_from >= 0:
            self._acc = b""
        if self._completed:
            self._completed = False
            self._sink = None
            self.done = True
            if sink is not None:
                sink.on_response_end()

    # --- httptools callbacks (no per-field ones) ---

    def on_message_begin(self) -> None:
        if self._completed or self._sink is None:
            # We never pipeline: bytes after a complete response are garbage (or an attack).
            raise UpstreamProtocolError("unexpected bytes after the response")

    def on_headers_complete(self) -> None:
        sink = self._sink
        if sink is None or self.done:
            raise UpstreamProtocolError("response without a request")
        acc = self._acc
        end = acc.find(b"\r\n\r\n", self._scan)
        if end < 0:  # cannot happen with strict CRLF parsing; refuse rather than guess
            raise UpstreamProtocolError("response head not found")
        line_end = acc.find(b"\r\n", self._scan)
        status_line = acc[self._scan : line_end]
        fields = acc[line_end:end]
        parts = status_line.split(b" ", 2)
        reason = parts[2] if len(parts) == 3 else b""
        parser = self._parser
        status: int = parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self._scan = end + 4
            sink.on_interim(status, reason, fields)
            return
        self._body_from = end + 4
        self._raw = sink.on_response(status, reason, fields, parser.should_keep_alive())
        if self._head_request and status >= 200:
            # The parser would wait for a Content-Length body that never comes: end here.
            self._reset_after = True
            self._completed = True
            self._body_from = len(acc)
            raise _StopParsing

    def on_body(self, data: bytes) -> None:
        if not self._raw:
            sink = self._sink
            if sink is not None:
                sink.on_response_body(data)

    def on_message_complete(self) -> None:
        if self._body_from >= 0:
            self._completed = True


class _StopParsing(Exception):
    """Raised from a callback to end a feed early (the parser is replaced afterwards)."""


def _unwrap(exc: httptools.HttpParserCallbackError) -> Exception:
    """The exception a request callback raised (HttpError from our checks), or a 400."""
    err = exc.__context__
    if isinstance(err, HttpError):
        return err
    if isinstance(err, Exception):
        return err
    return HttpError(400, f"malformed request: {exc}")
