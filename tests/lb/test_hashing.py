from __future__ import annotations

import itertools

from lb.hashing import endpoint_token, hash64, hash_pair, ring_point_blocks


def test_hash_values_are_pinned() -> None:
    # Pinned on purpose: a change here would remap every session key and every generated affinity
    # cookie across a fleet of proxies, and proxies of different versions would disagree.
    assert hash64(b"user-1") == 0x88E1EA21865AAC9A
    assert endpoint_token("10.0.0.1:8080") == "dc2d6b20c7f7d041"
    assert hash_pair("10.0.0.1:8080") == (0xA3696F99F092AF12, 0xD34F5CA4CB645747)


def test_hashes_separate_inputs() -> None:
    assert hash64(b"a") != hash64(b"b")
    assert endpoint_token("10.0.0.1:8080") != endpoint_token("10.0.0.2:8080")
    first, second = hash_pair("10.0.0.1:8080")
    assert first != second


def test_ring_point_blocks_are_a_stable_prefix() -> None:
    three = list(itertools.islice(ring_point_blocks("k"), 3))
    five = list(itertools.islice(ring_point_blocks("k"), 5))
    assert five[:3] == three
    assert all(len(b) == 64 for b in five)
    assert len(set(five)) == 5
