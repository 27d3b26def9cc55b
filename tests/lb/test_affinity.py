from __future__ import annotations

import pytest

from lb import Affinity, PickContext, affinity_hash_key, endpoint_token, session_cookie
from tests.lb.helpers import build, endpoints, key_owners, pick_key, sample_keys


def test_header_key_uses_lower_case_name() -> None:
    affinity = Affinity("header", "X-User")
    assert affinity_hash_key(affinity, {"x-user": "alice"}, {}, "10.1.1.1") == b"alice"
    assert affinity_hash_key(affinity, {"x-other": "alice"}, {}, "10.1.1.1") is None
    assert affinity_hash_key(affinity, {"x-user": ""}, {}, "10.1.1.1") is None


def test_cookie_key() -> None:
    affinity = Affinity("cookie", "sid")
    assert affinity_hash_key(affinity, {}, {"sid": "abc", "other": "x"}, "10.1.1.1") == b"abc"
    assert affinity_hash_key(affinity, {"sid": "abc"}, {}, "10.1.1.1") is None


def test_source_ip_key() -> None:
    affinity = Affinity("source_ip")
    assert affinity_hash_key(affinity, {}, {}, "10.1.1.1") == b"10.1.1.1"
    assert affinity_hash_key(affinity, {}, {}, "") is None


def test_no_cookie_generated_without_ttl_or_for_other_kinds() -> None:
    ep = endpoints(1)[0]
    assert session_cookie(Affinity("cookie", "sid"), ep) is None
    assert session_cookie(Affinity("header", "x-user"), ep) is None


def test_generated_cookie_headers() -> None:
    ep = endpoints(1)[0]
    lasting = session_cookie(Affinity("cookie", "sid", cookie_ttl_s=90.5, cookie_path="/app"), ep)
    assert lasting is not None
    assert lasting.value == endpoint_token(ep.key)
    assert lasting.hash_key == lasting.value.encode()
    assert lasting.set_cookie_header() == f"sid={lasting.value}; Path=/app; Max-Age=91; HttpOnly"
    session = session_cookie(Affinity("cookie", "sid", cookie_ttl_s=0), ep)
    assert session is not None
    assert session.set_cookie_header() == f"sid={session.value}; Path=/; HttpOnly"


@pytest.mark.parametrize("kind", ["ring_hash", "maglev"])
def test_generated_cookie_maps_back_to_the_endpoint(kind: str) -> None:
    affinity = Affinity("cookie", "sid", cookie_ttl_s=3600)
    eps = endpoints(12)
    balancer = build(kind, eps, maglev_table_size=5003, affinity=affinity)
    for first_pick in eps:  # whichever endpoint served the cookie-less request
        cookie = session_cookie(affinity, first_pick)
        assert cookie is not None
        key = affinity_hash_key(affinity, {}, {"sid": cookie.value}, "10.9.9.9")
        assert key == cookie.hash_key
        assert {pick_key(balancer, PickContext(hash_key=key)) for _ in range(5)} == {first_pick.key}


@pytest.mark.parametrize("kind", ["ring_hash", "maglev"])
def test_cookie_of_a_removed_endpoint_sticks_to_one_other(kind: str) -> None:
    affinity = Affinity("cookie", "sid", cookie_ttl_s=3600)
    eps = endpoints(12)
    cookie = session_cookie(affinity, eps[3])
    assert cookie is not None
    rebuilt = [build(kind, eps[:3] + eps[4:], seed=s, maglev_table_size=5003) for s in (1, 2)]
    owners = {pick_key(b, PickContext(hash_key=cookie.hash_key)) for b in rebuilt for _ in range(3)}
    assert len(owners) == 1
    assert owners != {eps[3].key}


def test_header_values_stick_like_any_hash_key() -> None:
    affinity = Affinity("header", "x-user")
    balancer = build("ring_hash", endpoints(8))
    keys = [affinity_hash_key(affinity, {"x-user": k.decode()}, {}, "") for k in sample_keys(50)]
    assert all(k is not None for k in keys)
    assert key_owners(balancer, [k for k in keys if k]) == key_owners(balancer, [k for k in keys if k])
