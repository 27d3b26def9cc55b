from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lb import POLICY_KINDS, Affinity, PolicySpec, is_prime, policy_from_dict


def test_defaults_follow_envoy() -> None:
    spec = policy_from_dict({})
    assert spec == PolicySpec()
    assert (spec.kind, spec.choice_count, spec.panic_threshold) == ("round_robin", 2, 0.5)
    assert (spec.ring_min_size, spec.ring_max_size, spec.maglev_table_size) == (1024, 8 * 1024 * 1024, 65537)
    assert spec.ewma_decay_s == 10.0


@pytest.mark.parametrize("kind", POLICY_KINDS)
def test_every_kind_parses(kind: str) -> None:
    assert policy_from_dict({"kind": kind}).kind == kind


def test_full_parse() -> None:
    spec = policy_from_dict(
        {
            "kind": "maglev",
            "maglev_table_size": 5003,
            "panic_threshold": 0,
            "affinity": {"kind": "cookie", "name": "sid", "cookie_ttl_s": 3600, "cookie_path": "/app"},
        },
        "clusters[0].lb",
    )
    assert spec.maglev_table_size == 5003
    assert spec.panic_threshold == 0
    assert spec.affinity == Affinity("cookie", "sid", 3600, "/app")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"kind": "foo"}, r"^lb\.kind: unknown policy 'foo' \(expected one of round_robin, "),
        ({"kind": 3}, r"^lb\.kind: must be a string"),
        ({"colour": "red"}, r"^lb\.colour: unknown field"),
        ({"choice_count": 1}, r"^lb\.choice_count: must be an integer in 2\.\.64, got 1"),
        ({"choice_count": "2"}, r"^lb\.choice_count: must be an integer"),
        ({"ring_min_size": 0}, r"^lb\.ring_min_size: must be an integer"),
        ({"ring_max_size": 9 * 1024 * 1024}, r"^lb\.ring_max_size: must be an integer"),
        ({"ring_min_size": 4096, "ring_max_size": 2048}, r"^lb\.ring_min_size: 4096 is larger than ring_max_size"),
        ({"maglev_table_size": 65536}, r"^lb\.maglev_table_size: must be a prime"),
        ({"maglev_table_size": 10_000_019}, r"^lb\.maglev_table_size: must be an integer in 3\.\.5000011"),
        ({"panic_threshold": 50}, r"^lb\.panic_threshold: must be a number in 0\.0\.\.1\.0, got 50"),
        ({"panic_threshold": True}, r"^lb\.panic_threshold: must be a number"),
        ({"ewma_decay_s": 0}, r"^lb\.ewma_decay_s: must be > 0"),
        ({"ewma_decay_s": float("nan")}, r"^lb\.ewma_decay_s: must be a number"),
        ({"active_request_bias": -1}, r"^lb\.active_request_bias: must be a number"),
        (
            {"kind": "least_request", "affinity": {"kind": "header", "name": "x-user"}},
            r"^lb\.affinity: session affinity needs a hashing policy \(ring_hash or maglev\), but kind is "
            "'least_request'",
        ),
        ({"kind": "ring_hash", "affinity": {"kind": "sticky"}}, r"^lb\.affinity\.kind: unknown affinity 'sticky'"),
        ({"kind": "ring_hash", "affinity": {"kind": "header"}}, r"^lb\.affinity\.name: a header name is required"),
        (
            {"kind": "ring_hash", "affinity": {"kind": "header", "name": "bad name"}},
            r"^lb\.affinity\.name: a header name is required",
        ),
        (
            {"kind": "ring_hash", "affinity": {"kind": "source_ip", "name": "x"}},
            r"^lb\.affinity\.name: not used by source_ip",
        ),
        (
            {"kind": "ring_hash", "affinity": {"kind": "cookie", "name": "sid", "cookie_ttl_s": -1}},
            r"^lb\.affinity\.cookie_ttl_s: must be a number >= 0",
        ),
        (
            {"kind": "ring_hash", "affinity": {"kind": "header", "name": "x", "cookie_ttl_s": 5}},
            r"^lb\.affinity\.cookie_ttl_s: only cookie affinity",
        ),
        (
            {"kind": "ring_hash", "affinity": {"kind": "cookie", "name": "sid", "cookie_path": "app"}},
            r"^lb\.affinity\.cookie_path: must start with '/'",
        ),
        ({"kind": "ring_hash", "affinity": {"kind": "cookie", "name": 5}}, r"^lb\.affinity\.name: must be a string"),
        ({"kind": "ring_hash", "affinity": {"kind": "cookie", "x": 1}}, r"^lb\.affinity\.x: unknown field"),
        ({"kind": "ring_hash", "affinity": "cookie"}, r"^lb\.affinity: must be an object"),
    ],
)
def test_bad_input_names_the_field(data: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        policy_from_dict(data)


def test_not_a_mapping() -> None:
    with pytest.raises(ValueError, match=r"^cluster\.lb: must be an object with string keys, got list"):
        policy_from_dict(["round_robin"], "cluster.lb")


def test_validate_checks_directly_built_specs() -> None:
    with pytest.raises(ValueError, match=r"^lb\.kind: unknown policy"):
        PolicySpec("fastest").validate()
    assert PolicySpec("maglev", maglev_table_size=5003).validate().kind == "maglev"


@given(st.integers(min_value=-5, max_value=3000))
def test_is_prime_matches_a_sieve(n: int) -> None:
    expected = n >= 2 and all(n % d for d in range(2, n))
    assert is_prime(n) == expected


def test_known_table_sizes() -> None:
    assert is_prime(65537)
    assert is_prime(5_000_011)
    assert not is_prime(65535)
