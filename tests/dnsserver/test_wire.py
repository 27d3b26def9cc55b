"""wire: fast query parsing, error replies, EDNS0 and truncation."""

from __future__ import annotations

import struct

import pytest
from dnslib import QTYPE, RR, A, DNSHeader, DNSQuestion, DNSRecord
from hypothesis import given, settings
from hypothesis import strategies as st

from dnsserver import wire
from tests.dnsserver.transport_helpers import SEEDS, query_bytes, svc


def header(qid: int = 7, flags: int = 0x0100, qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0) -> bytes:
    return struct.pack("!6H", qid, flags, qd, an, ns, ar)


QUESTION = b"\x03www\x07Example\x03com\x00" + struct.pack("!HH", 1, 1)
OPT = b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 0)


def test_parse_plain_query() -> None:
    q = wire.parse_query(header() + QUESTION)
    assert (q.id, q.qtype, q.qclass, q.rd, q.opcode) == (7, 1, 1, True, 0)
    assert q.qname == b"\x03www\x07Example\x03com\x00"
    assert q.qname_lower == b"\x03www\x07example\x03com\x00"
    assert q.labels() == (b"www", b"Example", b"com")
    assert q.edns is None
    assert q.question_end == 12 + len(QUESTION)


def test_parse_edns() -> None:
    do_opt = b"\x00" + struct.pack("!HHIH", 41, 4096, 0x8000, 0)
    q = wire.parse_query(header(ar=1) + QUESTION + do_opt)
    assert q.edns == wire.Edns(payload=4096, do=True, version=0)


def test_parse_skips_other_records_before_opt() -> None:
    # An answer record with a (backward) compressed owner name, then the OPT.
    rr = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + b"\x01\x02\x03\x04"
    q = wire.parse_query(header(an=1, ar=1) + QUESTION + rr + OPT)
    assert q.edns is not None
    assert q.edns.payload == 1232


def test_root_question() -> None:
    q = wire.parse_query(header() + b"\x00" + struct.pack("!HH", 2, 1))
    assert q.labels() == ()
    assert q.qtype == 2


@pytest.mark.parametrize(
    ("packet", "rcode"),
    [
        (b"", wire.DROP),
        (header()[:11], wire.DROP),
        (header(flags=0x8100) + QUESTION, wire.DROP),  # QR set: a response
        (header(flags=0x2900) + QUESTION, wire.NOTIMP),  # opcode 5 (UPDATE)
        (header(qd=0), wire.FORMERR),
        (header(qd=2) + QUESTION + QUESTION, wire.FORMERR),
        (header() + QUESTION[:5], wire.FORMERR),  # name cut short
        (header() + QUESTION[:-2], wire.FORMERR),  # qclass cut short
        (header() + b"\x40" + b"a" * 64 + b"\x00" + b"\x00\x01\x00\x01", wire.FORMERR),  # label > 63
        (header() + (b"\x3f" + b"a" * 63) * 4 + b"\x00\x00\x01\x00\x01", wire.FORMERR),  # name 257 > 255
        (header() + b"\xc0\x0c\x00\x01\x00\x01", wire.FORMERR),  # pointer to itself: a loop
        (header() + b"\x01a\xc0\x20\x00\x01\x00\x01", wire.FORMERR),  # forward pointer
        (header() + b"\x80abc\x00\x00\x01\x00\x01", wire.FORMERR),  # reserved label type
        (header(ar=2) + QUESTION + OPT + OPT, wire.FORMERR),  # two OPT
        (header(an=1) + QUESTION + OPT, wire.FORMERR),  # OPT in the answer section
        (header(ar=1) + QUESTION + b"\x01a" + OPT[1:], wire.FORMERR),  # OPT with an owner name
        (header(ar=1) + QUESTION, wire.FORMERR),  # announced record missing
        (header(ar=1) + QUESTION + OPT[:-1], wire.FORMERR),  # record cut short
        (header(ar=1) + QUESTION + OPT[:-2] + b"\x00\x05", wire.FORMERR),  # rdata longer than the packet
        (header(ar=1) + QUESTION + b"\x00" + struct.pack("!HHIH", 41, 1232, 0x00010000, 0), wire.BADVERS),
    ],
)
def test_rejects(packet: bytes, rcode: int) -> None:
    with pytest.raises(wire.QueryError) as info:
        wire.parse_query(packet)
    assert info.value.rcode == rcode


def test_max_length_name_accepted() -> None:
    name = (b"\x3f" + b"a" * 63) * 3 + b"\x3d" + b"a" * 61 + b"\x00"  # 255 octets
    assert len(name) == 255
    q = wire.parse_query(header() + name + b"\x00\x01\x00\x01")
    assert len(q.qname) == 255


def test_trailing_bytes_ignored() -> None:
    assert wire.parse_query(header() + QUESTION + b"junk").qtype == 1


def test_error_reply_formerr_without_question() -> None:
    packet = header(qid=0xBEEF, qd=2) + QUESTION
    with pytest.raises(wire.QueryError) as info:
        wire.parse_query(packet)
    data = wire.error_from(packet, info.value)
    assert data is not None
    reply = DNSRecord.parse(data)
    assert reply.header.id == 0xBEEF
    assert reply.header.qr == 1
    assert reply.header.rd == 1
    assert reply.header.rcode == wire.FORMERR
    assert reply.questions == []


def test_error_reply_badvers_carries_opt() -> None:
    packet = header(ar=1) + QUESTION + b"\x00" + struct.pack("!HHIH", 41, 1232, 0x00018000, 0)
    with pytest.raises(wire.QueryError) as info:
        wire.parse_query(packet)
    data = wire.error_from(packet, info.value)
    reply = DNSRecord.parse(data)
    assert reply.header.rcode == 0  # low 4 bits of 16
    (opt,) = reply.ar
    assert opt.rtype == 41
    assert opt.ttl >> 24 == 1  # high 8 bits of BADVERS
    assert (opt.ttl >> 16) & 0xFF == 0  # we speak version 0
    assert str(reply.q.qname) == "www.Example.com."


def test_error_reply_needs_header() -> None:
    assert wire.error_reply(b"\x01\x02\x03", wire.FORMERR) is None
    assert wire.error_reply(header(), wire.DROP) is None


def test_patch_id() -> None:
    assert wire.patch_id(b"\x00\x01rest", b"\xab\xcd") == b"\xab\xcdrest"


def test_udp_payload() -> None:
    assert wire.udp_payload(None, 4096) == 512
    assert wire.udp_payload(wire.Edns(100, False), 4096) == 512
    assert wire.udp_payload(wire.Edns(1232, False), 4096) == 1232
    assert wire.udp_payload(wire.Edns(65000, False), 4096) == 4096


def big_reply(count: int = 300) -> DNSRecord:
    request = DNSRecord(DNSHeader(id=99), q=DNSQuestion("big.default.svc.cluster.local", QTYPE.A))
    reply = request.reply()
    for i in range(count):
        reply.add_answer(RR("big.default.svc.cluster.local", QTYPE.A, ttl=5, rdata=A(f"10.0.{i // 250}.{i % 250}")))
    reply.add_ar(RR("extra.cluster.local", QTYPE.A, rdata=A("10.9.9.9")))
    return reply


def test_finish_adds_opt_only_when_asked() -> None:
    plain = DNSRecord.parse(wire.finish(big_reply(1), max_size=512, edns=None))
    assert all(rr.rtype != 41 for rr in plain.ar)
    with_opt = DNSRecord.parse(wire.finish(big_reply(1), max_size=1232, edns=wire.Edns(1232, True), payload=1232))
    opts = [rr for rr in with_opt.ar if rr.rtype == 41]
    assert len(opts) == 1
    assert opts[0].rclass == 1232
    assert opts[0].ttl & 0x8000  # DO copied


@pytest.mark.parametrize("size", [512, 1232, 4096])
def test_finish_truncates_to_size(size: int) -> None:
    edns = None if size == 512 else wire.Edns(size, False)
    data = wire.finish(big_reply(), max_size=size, edns=edns, payload=size)
    assert len(data) <= size
    reply = DNSRecord.parse(data)
    assert reply.header.tc == 1
    assert 0 < len(reply.rr) < 300
    assert all(rr.rtype == 41 for rr in reply.ar)  # additional dropped, OPT kept
    assert (edns is not None) == any(rr.rtype == 41 for rr in reply.ar)


def test_finish_drops_additional_before_answers_without_tc() -> None:
    reply = big_reply(28)  # 28 A records fit in 512 with compression, plus the extra A does not
    full = len(wire.finish(big_reply(28), max_size=65535, edns=None))
    data = wire.finish(reply, max_size=full - 1, edns=None)
    parsed = DNSRecord.parse(data)
    assert parsed.header.tc == 0
    assert len(parsed.rr) == 28
    assert parsed.ar == []


def test_finish_tcp_keeps_everything_and_compresses() -> None:
    data = wire.finish(big_reply(), max_size=wire.MAX_TCP, edns=None)
    reply = DNSRecord.parse(data)
    assert reply.header.tc == 0
    assert len(reply.rr) == 300
    assert len(data) < 300 * 20  # owner names are 2-byte pointers, not 31-byte names


def test_seed_packets_parse() -> None:
    for packet in SEEDS:
        assert wire.parse_query(packet).qclass == 1


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_parse_or_query_error(data: bytes) -> None:
    try:
        q = wire.parse_query(data)
    except wire.QueryError as exc:
        reply = wire.error_from(data, exc)
        assert reply is None or len(reply) >= 12
    else:
        assert len(q.qname) <= 255
        assert q.qname_lower == q.qname.lower()


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(SEEDS), st.integers(0, 599), st.binary(min_size=1, max_size=4))
def test_mutated_queries_parse_or_query_error(seed: bytes, pos: int, junk: bytes) -> None:
    data = seed[:pos] + junk + seed[pos + len(junk) :]
    try:
        wire.parse_query(data)
    except wire.QueryError as exc:
        wire.error_from(data, exc)


def test_query_bytes_helper_roundtrip() -> None:
    q = wire.parse_query(query_bytes(svc("web"), edns=1232, do=True))
    assert q.edns == wire.Edns(1232, True, 0)
