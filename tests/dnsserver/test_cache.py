"""cache: entries, rotation, per-version reset, bounds; and how the handler uses it."""

from __future__ import annotations

import gc

import pytest

from dnsserver.cache import MAX_RAW_KEY, AnswerCache, CacheEntry, CacheKey, cache_key
from dnsserver.metrics import Series
from tests.dnsserver.transport_helpers import a_records, make_handler, make_view, parse, query_bytes, svc

SERIES = Series("udp", "A", "cluster.local.", 0)


def key(name: bytes) -> CacheKey:
    return cache_key(name, 1, 1, 0x0100, False, 0, False)


def test_keys_tell_every_field_apart() -> None:
    base = (b"\x03web\x00", 1, 1, 0x0100, False, 0, False)
    variants = [
        (b"\x03weB\x00", 1, 1, 0x0100, False, 0, False),
        (b"\x02we\x00", 1, 1, 0x0100, False, 0, False),
        (b"\x03web\x00", 28, 1, 0x0100, False, 0, False),
        (b"\x03web\x00", 1, 255, 0x0100, False, 0, False),
        (b"\x03web\x00", 1, 1, 0x0000, False, 0, False),
        (b"\x03web\x00", 1, 1, 0x0100, True, 0, False),
        (b"\x03web\x00", 1, 1, 0x0100, False, 1232, False),
        (b"\x03web\x00", 1, 1, 0x0100, False, 1232, True),
    ]
    keys = {cache_key(*base), *(cache_key(*v) for v in variants)}
    assert len(keys) == len(variants) + 1
    assert cache_key(*base) == cache_key(*base)


def test_first_sight_stub_is_untracked_and_promotes() -> None:
    """A miss leaves plain bytes (nothing for the garbage collector); the first repeat makes the entry."""
    cache = AnswerCache(100)
    qname = b"\x03Web\x00"
    reply = b"\xbe\xef\x85\x03\x00\x01\x00\x00\x00\x00\x00\x00" + qname + b"\x00\x01\x00\x01"
    cache.put_first(key(b"\x03web\x00"), reply, lazy=2)
    stub = cache.get(key(b"\x03web\x00"))
    assert isinstance(stub, bytes)
    assert not gc.is_tracked(stub)
    assert not gc.is_tracked(key(b"\x03web\x00"))
    assert cache.stub_rcode(stub) == 3
    entry = cache.promote(key(b"\x03web\x00"), stub, len(qname), SERIES)
    assert cache.get(key(b"\x03web\x00")) is entry
    assert entry.variants == (reply[2:],)
    assert entry.qname == qname
    assert entry.lazy == 2
    assert entry.take() == reply[2:]
    assert len(cache) == 1


def test_entry_rotates_variants() -> None:
    entry = CacheEntry((b"a", b"b", b"c"), b"\x00", SERIES)
    assert [entry.take() for _ in range(6)] == [b"b", b"c", b"a", b"b", b"c", b"a"]
    single = CacheEntry((b"x",), b"\x00", SERIES)
    assert {single.take() for _ in range(3)} == {b"x"}


def test_reset_forgets_everything() -> None:
    cache = AnswerCache(100)
    cache.reset(1)
    entry = CacheEntry((b"x",), b"\x00", SERIES)
    cache.put(key(b"a"), entry)
    cache.remember_raw(b"raw", False, entry)
    assert cache.get(key(b"a")) is entry
    assert cache.udp_raw[b"raw"] is entry
    cache.reset(2)
    assert cache.version == 2
    assert cache.get(key(b"a")) is None
    assert not cache.udp_raw
    assert len(cache) == 0


def test_bounded_by_evicting_oldest() -> None:
    cache = AnswerCache(80)
    entry = CacheEntry((b"x",), b"\x00", SERIES)
    for i in range(1000):
        cache.put(key(str(i).encode()), entry)
        cache.remember_raw(str(i).encode(), True, entry)
    assert len(cache) <= 80
    assert len(cache.tcp_raw) <= 80
    assert cache.get(key(b"999")) is entry  # newest kept
    assert cache.get(key(b"0")) is None  # oldest gone


def test_large_raw_keys_not_remembered() -> None:
    cache = AnswerCache(100)
    entry = CacheEntry((b"x",), b"\x00", SERIES)
    cache.remember_raw(b"x" * (MAX_RAW_KEY + 1), False, entry)
    assert not cache.udp_raw


def test_too_small_rejected() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        AnswerCache(2)


def test_handler_hit_patches_id_and_keeps_case() -> None:
    handler = make_handler()
    first = handler.respond(query_bytes(svc("web"), qid=1), False)
    second = handler.respond(query_bytes(svc("web"), qid=2), False)
    assert isinstance(first, bytes)
    assert isinstance(second, bytes)
    assert first[2:] == second[2:]
    assert parse(second).header.id == 2
    assert handler.metrics.cache_hits_total() == 1

    mixed = handler.respond(query_bytes("wEB.Default.svc.Cluster.Local.", qid=3), False)
    assert isinstance(mixed, bytes)
    reply = parse(mixed)
    assert str(reply.q.qname) == "wEB.Default.svc.Cluster.Local."
    assert reply.header.id == 3
    assert a_records(mixed) == a_records(first)
    assert handler.metrics.cache_hits_total() == 2
    assert handler.metrics.cache_misses == 1


def test_handler_rotates_shuffled_answers() -> None:
    handler = make_handler()
    orders = {tuple(a_records(handler.respond(query_bytes(svc("api"), qid=i), False))) for i in range(12)}  # type: ignore[arg-type]
    assert len(orders) > 1
    assert all(sorted(order) == ["10.1.0.1", "10.1.0.2", "10.1.0.3"] for order in orders)


def test_handler_new_view_version_invalidates() -> None:
    views = [make_view({"web": 1}, version=1)]
    handler = make_handler()
    handler._view_provider = lambda: views[-1]
    assert a_records(handler.respond(query_bytes(svc("web")), False)) == ["10.1.0.1"]  # type: ignore[arg-type]
    views.append(make_view({"web": 2}, version=2))
    assert sorted(a_records(handler.respond(query_bytes(svc("web")), False))) == ["10.1.0.1", "10.1.0.2"]  # type: ignore[arg-type]


def test_handler_keys_by_transport_and_size() -> None:
    handler = make_handler()
    udp = parse(handler.respond(query_bytes(svc("big")), False))  # type: ignore[arg-type]
    tcp = parse(handler.respond(query_bytes(svc("big")), True))  # type: ignore[arg-type]
    edns = parse(handler.respond(query_bytes(svc("big"), edns=1232), False))  # type: ignore[arg-type]
    assert udp.header.tc == 1
    assert tcp.header.tc == 0
    assert len(tcp.rr) == 300
    assert len(udp.rr) < len(edns.rr) < 300
    # and again, now from the cache
    assert parse(handler.respond(query_bytes(svc("big")), True)).header.tc == 0  # type: ignore[arg-type]
    assert parse(handler.respond(query_bytes(svc("big")), False)).header.tc == 1  # type: ignore[arg-type]


def test_handler_cache_bounded_under_unique_names() -> None:
    handler = make_handler(cache_size=64)
    for i in range(2000):
        handler.respond(query_bytes(f"n{i}.default.svc.cluster.local.", qid=i), False)
    assert len(handler.cache) <= 64
    assert len(handler.cache.udp_raw) <= 64


def test_first_repeat_in_another_spelling_keeps_each_spelling() -> None:
    """The stub is promoted with its own spelling; the repeat is answered in the client's."""
    handler = make_handler()
    first = handler.respond(query_bytes("API.default.svc.cluster.local.", qid=1), False)
    other = handler.respond(query_bytes("api.DEFAULT.svc.cluster.local.", qid=2), False)
    again = handler.respond(query_bytes("API.default.svc.cluster.local.", qid=3), False)
    assert isinstance(first, bytes)
    assert isinstance(other, bytes)
    assert isinstance(again, bytes)
    assert str(parse(first).q.qname) == "API.default.svc.cluster.local."
    assert str(parse(other).q.qname) == "api.DEFAULT.svc.cluster.local."
    assert str(parse(again).q.qname) == "API.default.svc.cluster.local."
    assert sorted(a_records(other)) == sorted(a_records(first)) == ["10.1.0.1", "10.1.0.2", "10.1.0.3"]
    assert handler.metrics.cache_misses == 1
    assert handler.metrics.cache_hits_total() == 2
    assert handler.metrics.responses() == {("NOERROR", "cluster.local."): 3}


def test_promoted_stub_keeps_its_place_in_the_eviction_order() -> None:
    cache = AnswerCache(8)
    reply = b"\x00\x00\x85\x00\x00\x01\x00\x00\x00\x00\x00\x00\x01a\x00\x00\x01\x00\x01"
    for i in range(8):
        cache.put_first(key(bytes([1, 97 + i, 0])), reply)
    stub = cache.get(key(b"\x01a\x00"))
    assert isinstance(stub, bytes)
    cache.promote(key(b"\x01a\x00"), stub, 3, SERIES)
    cache.put_first(key(b"\x01z\x00"), reply)  # full: the oldest eighth goes, the promoted entry with it
    assert cache.get(key(b"\x01a\x00")) is None
    assert cache.get(key(b"\x01b\x00")) is not None
