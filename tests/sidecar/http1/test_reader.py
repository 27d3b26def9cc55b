"""Sans-I/O readers fed with bytes: smuggling attempts, limits, pipelining, interim and HEAD responses."""

from __future__ import annotations

import pytest

from sidecar.http1.framing import HttpError, RequestHead, UpstreamProtocolError
from sidecar.http1.reader import HeadLimits, RequestReader, ResponseReader


class Requests:
    """A RequestSink that records what the reader reports."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def on_request(self, head: RequestHead) -> None:
        self.events.append(("head", head))

    def on_request_body(self, data: bytes) -> None:
        self.events.append(("body", data))

    def on_request_end(self, trailers: list[tuple[bytes, bytes]] | None) -> None:
        self.events.append(("end", trailers))

    def heads(self) -> list[RequestHead]:
        return [e[1] for e in self.events if e[0] == "head"]  # type: ignore[misc]

    def body(self) -> bytes:
        return b"".join(e[1] for e in self.events if e[0] == "body")  # type: ignore[misc]


def read(data: bytes | list[bytes], limits: HeadLimits | None = None) -> tuple[Requests, RequestReader]:
    sink = Requests()
    reader = RequestReader(sink, limits or HeadLimits())
    for piece in [data] if isinstance(data, bytes) else data:
        reader.feed(piece)
    return sink, reader


@pytest.mark.parametrize(
    "raw",
    [
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFF\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n",  # obsolete line folding
        b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",  # space before colon
        b"GET / HTTP/1.1\nHost: a\n\n",  # bare LF
        b"GET / HTTP/1.1\r\nHost: a\x00b\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
    ],
    ids=[
        "cl-te",
        "te-cl",
        "double-cl",
        "bad-chunk-size",
        "chunk-size-space",
        "chunk-overflow",
        "obs-fold",
        "space-before-colon",
        "bare-lf",
        "nul",
        "te-not-last",
    ],
)
def test_smuggling_attempts_raise_400(raw: bytes) -> None:
    with pytest.raises(HttpError) as caught:
        read(raw)
    assert caught.value.status == 400


def test_pipelined_requests_come_out_in_order() -> None:
    sink, _ = read(
        b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
        b"POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
        b"GET /3 HTTP/1.1\r\nHost: a\r\n\r\n"
    )
    assert [h.path for h in sink.heads()] == ["/1", "/2", "/3"]
    kinds = [e[0] for e in sink.events]
    assert kinds == ["head", "end", "head", "body", "end", "head", "end"]


def test_chunked_body_arrives_decoded_with_trailers() -> None:
    sink, _ = read(
        [b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", b"lo\r\n0\r\nX-T: 1\r\n\r\n"]
    )
    assert sink.body() == b"hello"
    assert sink.events[-1] == ("end", [(b"X-T", b"1")])


def test_head_split_across_reads() -> None:
    sink, reader = read([b"GET /x HT", b"TP/1.1\r\nHo", b"st: a\r\n", b"\r\n"])
    assert sink.heads()[0].path == "/x"
    assert not reader.in_head


def test_in_head_is_true_while_a_head_is_incomplete() -> None:
    _, reader = read(b"GET / HTTP/1.1\r\nHost: a\r\n")
    assert reader.in_head
    assert reader.head_started_at > 0


def test_oversized_field_gets_431() -> None:
    with pytest.raises(HttpError) as caught:
        read(b"GET / HTTP/1.1\r\nHost: a\r\nX-A: " + b"a" * 5000 + b"\r\n\r\n", HeadLimits(max_head_bytes=4096))
    assert caught.value.status == 431


def test_oversized_field_trickled_in_small_reads_gets_431() -> None:
    pieces = [b"GET / HTTP/1.1\r\nHost: a\r\nX-A: "] + [b"a" * 100] * 60
    with pytest.raises(HttpError) as caught:
        read(pieces, HeadLimits(max_head_bytes=4096))
    assert caught.value.status == 431


def test_too_many_fields_get_431() -> None:
    fields = b"".join(b"X-%d: 1\r\n" % i for i in range(20))
    with pytest.raises(HttpError) as caught:
        read(b"GET / HTTP/1.1\r\nHost: a\r\n" + fields + b"\r\n", HeadLimits(max_fields=10))
    assert caught.value.status == 431


def test_upgrade_returns_the_tunnel_bytes() -> None:
    sink = Requests()
    reader = RequestReader(sink, HeadLimits())
    tail = reader.feed(b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x05hello")
    assert tail == b"\x81\x05hello"
    assert sink.heads()[0].upgrade == b"websocket"


# === responses ===


class Responses:
    def __init__(self, raw: bool = True) -> None:
        self.raw = raw
        self.events: list[tuple[str, object]] = []

    def on_interim(self, status: int, reason: bytes, fields: bytes) -> None:
        self.events.append(("interim", status))

    def on_response(self, status: int, reason: bytes, fields: bytes, keep_alive: bool) -> bool:
        self.events.append(("head", (status, reason, fields, keep_alive)))
        return self.raw

    def on_response_raw(self, data: bytes) -> None:
        self.events.append(("raw", data))

    def on_response_body(self, data: bytes) -> None:
        self.events.append(("body", data))

    def on_response_end(self) -> None:
        self.events.append(("end", None))

    def data(self, kind: str) -> bytes:
        return b"".join(e[1] for e in self.events if e[0] == kind)  # type: ignore[misc]


def test_response_body_is_relayed_raw_after_the_head() -> None:
    reader = ResponseReader(HeadLimits())
    sink = Responses()
    reader.expect(sink, head_request=False)
    reader.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nX-A: 1\r\n\r\n01234")
    reader.feed(b"56789")
    assert sink.events[0] == ("head", (200, b"OK", b"\r\nContent-Length: 10\r\nX-A: 1", True))
    assert sink.data("raw") == b"0123456789"
    assert sink.events[-1] == ("end", None)
    assert reader.done


def test_chunked_response_raw_keeps_framing_and_decoded_drops_it() -> None:
    wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    for raw, kind, expected in ((True, "raw", b"3\r\nabc\r\n0\r\n\r\n"), (False, "body", b"abc")):
        reader = ResponseReader(HeadLimits())
        sink = Responses(raw)
        reader.expect(sink, head_request=False)
        reader.feed(wire)
        assert sink.data(kind) == expected
        assert sink.events[-1][0] == "end"


def test_interim_responses_come_before_the_final_one() -> None:
    reader = ResponseReader(HeadLimits())
    sink = Responses()
    reader.expect(sink, head_request=False)
    reader.feed(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"
    )
    assert [e[0] for e in sink.events] == ["interim", "interim", "head", "end"]


def test_head_response_ends_at_its_head_and_the_next_response_parses() -> None:
    reader = ResponseReader(HeadLimits())
    sink = Responses()
    reader.expect(sink, head_request=True)
    reader.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
    assert [e[0] for e in sink.events] == ["head", "end"]
    second = Responses()
    reader.expect(second, head_request=False)
    reader.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    assert second.data("raw") == b"ok"


def test_bytes_after_a_complete_response_are_refused() -> None:
    reader = ResponseReader(HeadLimits())
    reader.expect(Responses(), head_request=False)
    with pytest.raises(UpstreamProtocolError):
        reader.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n")


def test_unsolicited_response_is_refused() -> None:
    reader = ResponseReader(HeadLimits())
    with pytest.raises(UpstreamProtocolError):
        reader.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")


def test_malformed_response_is_an_upstream_error() -> None:
    reader = ResponseReader(HeadLimits())
    reader.expect(Responses(), head_request=False)
    with pytest.raises(UpstreamProtocolError):
        reader.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")


def test_oversized_response_head_is_refused() -> None:
    reader = ResponseReader(HeadLimits(max_head_bytes=1024))
    reader.expect(Responses(), head_request=False)
    with pytest.raises(UpstreamProtocolError):
        reader.feed(b"HTTP/1.1 200 OK\r\nX-A: " + b"a" * 2000)


def test_switching_protocols_returns_tunnel_bytes() -> None:
    reader = ResponseReader(HeadLimits())
    sink = Responses(raw=False)
    reader.expect(sink, head_request=False)
    tail = reader.feed(
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x02hi"
    )
    assert tail == b"\x81\x02hi"
    assert [e[0] for e in sink.events] == ["head", "end"]
