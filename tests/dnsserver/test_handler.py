"""handler: respond() on bytes, without sockets."""

from __future__ import annotations

import random
import struct

from dnslib import QTYPE
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from dnsserver import wire
from dnsserver.handler import DnsHandler, Pending
from dnsserver.metrics import DnsMetrics
from tests.dnsserver.transport_helpers import (
    CONFIG,
    SEEDS,
    exploding_answer,
    make_handler,
    make_view,
    mutate,
    parse,
    query_bytes,
    rcode,
    stand_in_answer,
    svc,
)


def test_answers_our_zone() -> None:
    handler = make_handler()
    data = handler.respond(query_bytes(svc("web"), qid=77), False)
    reply = parse(data)  # type: ignore[arg-type]
    assert reply.header.id == 77
    assert reply.header.qr == 1
    assert reply.header.aa == 1
    assert [str(rr.rdata) for rr in reply.rr] == ["10.1.0.1"]
    assert reply.ar == []  # no OPT: the query had none


def test_edns_echoed_with_our_size() -> None:
    handler = make_handler()
    reply = parse(handler.respond(query_bytes(svc("web"), edns=8192, do=True), False))  # type: ignore[arg-type]
    (opt,) = reply.ar
    assert opt.rtype == 41
    assert opt.rclass == CONFIG.max_udp_size  # min(client 8192, ours 4096)
    assert opt.ttl & 0x8000


def test_nxdomain_and_refused_without_upstream() -> None:
    handler = make_handler()
    assert rcode(handler.respond(query_bytes("nope.default.svc.cluster.local."), False)) == "NXDOMAIN"  # type: ignore[arg-type]
    assert rcode(handler.respond(query_bytes("example.org."), False)) == "REFUSED"  # type: ignore[arg-type]
    assert rcode(handler.respond(query_bytes("example.org."), False)) == "REFUSED"  # type: ignore[arg-type]
    assert handler.metrics.responses()[("REFUSED", ".")] == 2


def test_not_synced_is_servfail_and_not_cached() -> None:
    handler = make_handler(make_view(synced=False, version=0))
    for _ in range(2):
        assert rcode(handler.respond(query_bytes(svc("web")), False)) == "SERVFAIL"  # type: ignore[arg-type]
    assert len(handler.cache) == 0
    assert rcode(handler.respond(query_bytes("example.org."), False)) == "REFUSED"  # type: ignore[arg-type]


def test_malformed_gets_formerr_or_drop() -> None:
    handler = make_handler()
    assert handler.respond(b"\x00\x01", False) is None
    response = struct.pack("!6H", 1, 0x8100, 1, 0, 0, 0) + b"\x00\x00\x01\x00\x01"
    assert handler.respond(response, False) is None
    formerr = handler.respond(struct.pack("!6H", 9, 0x0100, 2, 0, 0, 0), False)
    assert rcode(formerr) == "FORMERR"  # type: ignore[arg-type]
    notimp = handler.respond(struct.pack("!6H", 9, 0x2000, 0, 0, 0, 0), False)  # opcode 4 NOTIFY
    assert rcode(notimp) == "NOTIMP"  # type: ignore[arg-type]
    assert handler.metrics.panics == 0


def test_internal_error_is_servfail_and_counted() -> None:
    handler = make_handler(answer_fn=exploding_answer)
    data = handler.respond(query_bytes(svc("web"), qid=5, edns=1232), False)
    reply = parse(data)  # type: ignore[arg-type]
    assert reply.header.rcode == wire.SERVFAIL
    assert reply.header.id == 5
    assert str(reply.q.qname) == svc("web")
    assert handler.metrics.panics == 1


def test_question_echoed_as_received() -> None:
    handler = make_handler()
    reply = parse(handler.respond(query_bytes("WEB.default.SVC.cluster.local.", QTYPE.A), False))  # type: ignore[arg-type]
    assert str(reply.q.qname) == "WEB.default.SVC.cluster.local."


def test_rd_copied() -> None:
    handler = make_handler()
    assert parse(handler.respond(query_bytes(svc("web"), rd=False), False)).header.rd == 0  # type: ignore[arg-type]
    assert parse(handler.respond(query_bytes(svc("web"), rd=True), False)).header.rd == 1  # type: ignore[arg-type]


def test_forward_returns_pending() -> None:
    class FakeForwarder:
        busy = False

        def use_metrics(self, metrics: DnsMetrics) -> None:
            pass

        def lookup(self, request: object, *, do: bool = False) -> None:
            return None

    handler = make_handler(forwarder=FakeForwarder())  # type: ignore[arg-type]
    assert isinstance(handler.respond(query_bytes("example.org."), False), Pending)
    FakeForwarder.busy = True
    assert rcode(handler.respond(query_bytes("example.org."), False)) == "REFUSED"  # type: ignore[arg-type]
    assert handler.metrics.forward_rejects == 1


def test_metrics_exposition() -> None:
    registry = CollectorRegistry()
    handler = DnsHandler(
        CONFIG,
        make_view,
        None,
        answer_fn=stand_in_answer,
        metrics=DnsMetrics(registry),
    )
    for qtype in (QTYPE.A, QTYPE.A, QTYPE.NAPTR + 1000, QTYPE.AAAA):
        handler.respond(query_bytes(svc("web"), qtype), True)
    handler.respond(query_bytes(svc("web")), False)
    handler.respond(b"\x00\x01\x02", False)
    text = generate_latest(registry).decode()
    assert 'mesh_dns_requests_total{proto="tcp",type="A",zone="cluster.local."} 2.0' in text
    assert 'mesh_dns_requests_total{proto="tcp",type="other",zone="cluster.local."} 1.0' in text
    assert 'mesh_dns_requests_total{proto="udp",type="other",zone="dropped"} 1.0' in text
    assert 'mesh_dns_responses_total{rcode="NOERROR",zone="cluster.local."} 5.0' in text
    assert 'mesh_dns_cache_hits_total{type="A"} 1.0' in text
    assert "mesh_dns_cache_misses_total 4.0" in text
    assert "mesh_dns_cache_entries 4.0" in text
    assert 'mesh_dns_request_duration_seconds_count{type="A"} 3.0' in text
    assert "mesh_dns_panics_total 0.0" in text


def test_real_answer_core_importable_default() -> None:
    handler = DnsHandler(CONFIG, make_view, None)
    assert callable(handler._answer_fn)
    assert handler.respond(query_bytes(svc("web")), False) is not None


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=700), st.booleans())
def test_random_bytes_never_raise(data: bytes, tcp: bool) -> None:
    handler = _FUZZ_HANDLER
    result = handler.respond(data, tcp)
    assert result is None or isinstance(result, bytes)
    if isinstance(result, bytes):
        assert len(result) >= 12
        assert result[:2] == data[:2]
    assert handler.metrics.panics == 0


@settings(max_examples=1000, deadline=None)
@given(st.sampled_from(SEEDS), st.integers(0, 2**32), st.booleans())
def test_mutated_queries_never_raise(seed: bytes, salt: int, tcp: bool) -> None:
    handler = _FUZZ_HANDLER
    data = mutate(seed, random.Random(salt))
    result = handler.respond(data, tcp)
    assert result is None or isinstance(result, bytes)
    if isinstance(result, bytes) and not tcp:
        assert len(result) <= 4096
    assert handler.metrics.panics == 0


_FUZZ_HANDLER = make_handler()
