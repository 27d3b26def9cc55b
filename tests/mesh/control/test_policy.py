"""DestinationRule traffic policy → cluster load balancing and timeouts."""

from __future__ import annotations

from mesh.control.policy import cluster_settings
from mesh.rules.destination_rule import DestinationRuleSpec
from tests.mesh.rules.helpers import dr, parse


def _settings(policy: dict[str, object]):  # type: ignore[no-untyped-def]
    spec = parse(dr(trafficPolicy=policy)).spec
    assert isinstance(spec, DestinationRuleSpec)
    return cluster_settings(spec.traffic_policy)


def test_simple_policies() -> None:
    assert cluster_settings(None).lb.kind == "round_robin"
    assert _settings({"loadBalancer": {"simple": "LEAST_CONN"}}).lb.kind == "least_request"
    assert _settings({"loadBalancer": {"simple": "RANDOM"}}).lb.kind == "random"
    assert _settings({"loadBalancer": {"simple": "PASSTHROUGH"}}).lb.kind == "round_robin"


def test_consistent_hash_becomes_a_hashing_policy_with_affinity() -> None:
    header = _settings({"loadBalancer": {"consistentHash": {"httpHeaderName": "x-user"}}}).lb
    assert header.kind == "ring_hash"
    assert header.affinity is not None
    assert header.affinity.name == "x-user"
    cookie = _settings(
        {
            "loadBalancer": {
                "consistentHash": {
                    "httpCookie": {"name": "sid", "path": "/a", "ttl": "1h"},
                    "maglev": {"tableSize": 65537},
                }
            }
        }
    ).lb
    assert cookie.kind == "maglev"
    assert cookie.affinity is not None
    assert (cookie.affinity.kind, cookie.affinity.cookie_ttl_s, cookie.affinity.cookie_path) == ("cookie", 3600.0, "/a")
    ring = _settings(
        {"loadBalancer": {"consistentHash": {"useSourceIp": True, "ringHash": {"minimumRingSize": 4096}}}}
    ).lb
    assert ring.ring_min_size == 4096
    assert ring.affinity is not None
    assert ring.affinity.kind == "source_ip"


def test_timeouts_come_from_the_connection_pool() -> None:
    settings = _settings({"connectionPool": {"tcp": {"connectTimeout": "250ms", "idleTimeout": "2m"}}})
    assert (settings.connect_timeout_s, settings.idle_timeout_s) == (0.25, 120.0)
    settings = _settings({"connectionPool": {"tcp": {"idleTimeout": "2m"}, "http": {"idleTimeout": "30s"}}})
    assert settings.idle_timeout_s == 30.0
