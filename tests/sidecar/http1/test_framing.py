"""Framing decisions on parsed heads: no sockets, no parser."""

from __future__ import annotations

import pytest

from sidecar.http1.framing import (
    Body,
    HttpError,
    UpstreamProtocolError,
    field_values,
    parse_content_length,
    parse_fields,
    remove_fields,
    request_head,
    response_head,
    split_target,
)

HOST = (b"Host", b"svc")


def req(*headers: tuple[bytes, bytes], method: bytes = b"GET", target: bytes = b"/", version: bytes = b"1.1"):  # type: ignore[no-untyped-def]
    return request_head(method, target, version, list(headers))


# === request bodies and smuggling shapes ===


def test_no_body_by_default() -> None:
    head = req(HOST)
    assert head.body == Body.NONE
    assert head.content_length == 0


def test_content_length_body() -> None:
    head = req(HOST, (b"Content-Length", b"12"), method=b"POST")
    assert (head.body, head.content_length) == (Body.LENGTH, 12)


def test_chunked_body() -> None:
    head = req(HOST, (b"Transfer-Encoding", b"Chunked"), method=b"POST")
    assert head.body == Body.CHUNKED


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ([(b"Content-Length", b"5"), (b"Transfer-Encoding", b"chunked")], 400),  # CL.TE / TE.CL
        ([(b"Content-Length", b"5"), (b"Content-Length", b"5")], 400),  # double CL, even equal
        ([(b"Content-Length", b"5, 5")], 400),
        ([(b"Content-Length", b"+5")], 400),
        ([(b"Content-Length", b"-1")], 400),
        ([(b"Content-Length", b"0x10")], 400),
        ([(b"Transfer-Encoding", b"chunked, chunked")], 400),
        ([(b"Transfer-Encoding", b"chunked"), (b"Transfer-Encoding", b"chunked")], 400),
        ([(b"Transfer-Encoding", b"chunked, gzip")], 400),  # chunked must be last
        ([(b"Transfer-Encoding", b"gzip")], 400),
        ([(b"Transfer-Encoding", b"gzip, chunked")], 501),  # a coding we do not implement
        ([(b"Transfer-Encoding", b"xchunked")], 400),
    ],
)
def test_smuggling_shapes_are_refused(headers: list[tuple[bytes, bytes]], status: int) -> None:
    with pytest.raises(HttpError) as caught:
        req(HOST, *headers, method=b"POST")
    assert caught.value.status == status


def test_transfer_encoding_on_http10_is_refused() -> None:
    with pytest.raises(HttpError) as caught:
        req(HOST, (b"Transfer-Encoding", b"chunked"), method=b"POST", version=b"1.0")
    assert caught.value.status == 400


def test_two_hosts_are_refused() -> None:
    with pytest.raises(HttpError):
        req(HOST, (b"Host", b"other"))


def test_http11_needs_host_but_http10_does_not() -> None:
    with pytest.raises(HttpError) as caught:
        req()
    assert caught.value.status == 400
    assert req(version=b"1.0").host == b""


@pytest.mark.parametrize("version", [b"0.9", b"2.0", b"1.2"])
def test_other_versions_get_505(version: bytes) -> None:
    with pytest.raises(HttpError) as caught:
        req(HOST, version=version)
    assert caught.value.status == 505


def test_connect_is_refused() -> None:
    with pytest.raises(HttpError) as caught:
        req((b"Host", b"a:443"), method=b"CONNECT", target=b"a:443")
    assert caught.value.status == 405


def test_unknown_expectation_gets_417() -> None:
    with pytest.raises(HttpError) as caught:
        req(HOST, (b"Expect", b"something"))
    assert caught.value.status == 417
    assert req(HOST, (b"Expect", b"100-Continue")).expect_continue


def test_parse_content_length() -> None:
    assert parse_content_length(b" 42 ") == 42
    with pytest.raises(HttpError):
        parse_content_length(b"1" * 19)


# === hop-by-hop and proxy fields ===


def test_hop_by_hop_fields_are_dropped_and_named_ones_too() -> None:
    head = req(
        HOST,
        (b"Connection", b"keep-alive, X-Secret"),
        (b"Keep-Alive", b"timeout=5"),
        (b"TE", b"trailers"),
        (b"Proxy-Authorization", b"Basic x"),
        (b"X-Secret", b"1"),
        (b"traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        (b"X-B3-TraceId", b"80f198ee56343ba864fe8b2a57d3eff7"),
    )
    names = [n.lower() for n, _ in head.headers]
    assert names == [b"traceparent", b"x-b3-traceid"]


def test_forwarding_fields_are_collected() -> None:
    head = req(HOST, (b"X-Forwarded-For", b"10.0.0.1"), (b"x-forwarded-for", b"10.0.0.2"), (b"X-Request-Id", b"abc"))
    assert head.forwarded_for == b"10.0.0.1, 10.0.0.2"
    assert head.request_id == b"abc"
    assert (b"X-Request-Id", b"abc") in head.headers


def test_keep_alive_rules() -> None:
    assert req(HOST).keep_alive
    assert not req(HOST, (b"Connection", b"close")).keep_alive
    assert not req(version=b"1.0").keep_alive
    assert req((b"Connection", b"Keep-Alive"), version=b"1.0").keep_alive


def test_upgrade_needs_connection_upgrade() -> None:
    head = req(HOST, (b"Connection", b"Upgrade"), (b"Upgrade", b"websocket"))
    assert head.upgrade == b"websocket"
    assert req(HOST, (b"Upgrade", b"websocket")).upgrade is None
    with pytest.raises(HttpError):
        req(HOST, (b"Connection", b"upgrade"), (b"Upgrade", b"h2c"), (b"Content-Length", b"3"), method=b"POST")


# === targets ===


def test_absolute_form_sets_host_and_origin_form() -> None:
    head = req((b"Host", b"ignored"), target=b"http://Web:8080/a/b?x=1")
    assert head.host == b"Web:8080"
    assert head.target == b"/a/b?x=1"
    assert (head.path, head.query) == ("/a/b", "x=1")


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (b"/p?q", (b"/p?q", None)),
        (b"http://h", (b"/", b"h")),
        (b"http://h?x", (b"/?x", b"h")),
        (b"HTTPS://h:1/p", (b"/p", b"h:1")),
        (b"*", (b"*", None)),
    ],
)
def test_split_target(target: bytes, expected: tuple[bytes, bytes | None]) -> None:
    assert split_target(target) == expected


def test_userinfo_in_target_is_refused() -> None:
    with pytest.raises(HttpError):
        split_target(b"http://user:pw@h/")


# === responses ===

NGINX = b'\r\nServer: nginx\r\nContent-Type: text/plain\r\nContent-Length: 1024\r\nConnection: keep-alive\r\nETag: "x"'


def resp(fields: bytes, **kw: object):  # type: ignore[no-untyped-def]
    args: dict[str, object] = {
        "request_method": b"GET",
        "upstream_keep_alive": True,
        "client_version": b"1.1",
        "client_keep_alive": True,
        "upgrade": False,
    }
    args.update(kw)
    status = int(args.pop("status", 200))  # type: ignore[call-overload]
    return response_head(status, b"OK", fields, **args)  # type: ignore[arg-type]


def test_a_field_that_only_starts_like_transfer_encoding_does_not_frame_the_body() -> None:
    head = resp(b"\r\nTransfer-Encoding-Hint: none\r\nTE-Extra: 1\r\nContent-Length: 5")
    assert (head.body_in, head.content_length) == (Body.LENGTH, 5)
    assert head.keep_alive_down


def test_response_with_length_is_relayed_raw_without_hop_fields() -> None:
    head = resp(NGINX)
    assert head.raw_body
    assert (head.body_in, head.body_out, head.content_length) == (Body.LENGTH, Body.LENGTH, 1024)
    assert b"connection" not in head.fields.lower()
    assert parse_fields(head.fields) == [
        (b"Server", b"nginx"),
        (b"Content-Type", b"text/plain"),
        (b"Content-Length", b"1024"),
        (b"ETag", b'"x"'),
    ]
    assert head.keep_alive_down
    assert head.reuse_up


def test_chunked_response_to_http10_client_is_decoded_and_closes() -> None:
    head = resp(b"\r\nTransfer-Encoding: chunked\r\nX-A: 1", client_version=b"1.0", client_keep_alive=True)
    assert not head.raw_body
    assert head.body_out == Body.UNTIL_CLOSE
    assert not head.keep_alive_down
    assert b"transfer-encoding" not in head.fields.lower()


def test_close_delimited_response_closes_both_sides() -> None:
    head = resp(b"\r\nX-A: 1")
    assert head.body_in == Body.UNTIL_CLOSE
    assert not head.keep_alive_down
    assert not head.reuse_up


def test_head_and_304_have_no_body_but_keep_length() -> None:
    head = resp(NGINX, request_method=b"HEAD")
    assert head.body_in == Body.NONE
    assert b"Content-Length: 1024" in head.fields
    assert resp(b"\r\nContent-Length: 10", status=304).body_in == Body.NONE


def test_fields_named_by_connection_and_other_hop_fields_are_removed() -> None:
    head = resp(b"\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nX-Keep: 2\r\nContent-Length: 0")
    names = [n.lower() for n, _ in parse_fields(head.fields)]
    assert names == [b"x-keep", b"content-length"]


def test_upstream_close_means_no_reuse() -> None:
    assert not resp(NGINX, upstream_keep_alive=False).reuse_up


def test_invalid_response_length_is_an_upstream_error() -> None:
    with pytest.raises(UpstreamProtocolError):
        resp(b"\r\nContent-Length: x1")


def test_upgrade_response_keeps_upgrade_fields() -> None:
    head = resp(b"\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: abc", status=101, upgrade=True)
    assert b"Upgrade: websocket" in head.fields
    assert b"Connection: upgrade" in head.fields
    assert b"Sec-WebSocket-Accept: abc" in head.fields


def test_field_helpers() -> None:
    fields = b"\r\nA: 1\r\nB: 2\r\na: 3"
    assert field_values(fields, fields.lower(), b"a") == [b"1", b"3"]
    assert remove_fields(fields, frozenset({b"a"})) == b"\r\nB: 2"
