"""Wire format helpers: request ids, heads, chunks, the proxy's own answers."""

from __future__ import annotations

import uuid

from sidecar.http1.framing import request_head, response_head
from sidecar.http1.wire import RequestIds, chunk, error_response, last_chunk, request_head_bytes, response_head_bytes


def test_request_ids_are_unique_uuid4() -> None:
    ids = RequestIds()
    values = [ids.next() for _ in range(1000)]
    assert len(set(values)) == 1000
    for value in values[:50] + values[-50:]:
        parsed = uuid.UUID(value.decode())
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


def test_request_head_bytes() -> None:
    head = request_head(b"POST", b"/a?b", b"1.1", [(b"Host", b"web"), (b"Content-Length", b"3"), (b"X-A", b"1")])
    data = request_head_bytes(
        head, head.host, head.target, ((b"x-route", b"r1"),), b"10.0.0.1", b"id-1", frozenset({b"x-a"})
    )
    assert data == (
        b"POST /a?b HTTP/1.1\r\nHost: web\r\nx-route: r1\r\nX-Forwarded-For: 10.0.0.1\r\nx-request-id: id-1\r\n"
        b"X-Forwarded-Proto: http\r\nContent-Length: 3\r\n\r\n"
    )


def test_response_head_bytes_for_http10_keep_alive() -> None:
    head = response_head(
        200,
        b"OK",
        b"\r\nContent-Length: 2",
        request_method=b"GET",
        upstream_keep_alive=True,
        client_version=b"1.0",
        client_keep_alive=True,
        upgrade=False,
    )
    assert response_head_bytes(head, ((b"Set-Cookie", b"a=1"),), client_version=b"1.0") == (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nSet-Cookie: a=1\r\nConnection: keep-alive\r\n\r\n"
    )


def test_chunks_and_errors() -> None:
    assert chunk(b"hello") == b"5\r\nhello\r\n"
    assert last_chunk() == b"0\r\n\r\n"
    assert last_chunk([(b"X-T", b"1")]) == b"0\r\nX-T: 1\r\n\r\n"
    answer = error_response(503, "no healthy upstream", close=True)
    assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert answer.endswith(b"Connection: close\r\n\r\nno healthy upstream\n")
    head_only = error_response(404, "nope", close=False, head_request=True)
    assert head_only.endswith(b"Content-Length: 5\r\n\r\n")
