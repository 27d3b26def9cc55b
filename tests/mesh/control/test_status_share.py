"""The decisions of shared status, without sockets: liveness, which entry of a moved sidecar wins,
what counts as a change worth writing."""

from __future__ import annotations

import json
from typing import Any

from discovery.client_models import KVPair
from mesh.control.status_share import ReplicaInfo, merge_sidecars, parse_replica, pick, stable_part


def entry(sidecar_id: str, replica: str, *, connected: bool = True, last_seen: str = "2026-01-01T00:00:00.000Z") -> Any:
    return {"id": sidecar_id, "replica": replica, "connected": connected, "last_seen": last_seen, "in_sync": True}


def test_a_replica_is_alive_while_its_heartbeat_is_within_its_ttl() -> None:
    info = ReplicaInfo("a", "http://127.0.0.1:1", heartbeat_at=100.0, ttl=15.0, config_version=3)
    assert info.alive(115.0)
    assert not info.alive(115.1)
    assert info.to_json(110.0, "a") == {
        "id": "a",
        "url": "http://127.0.0.1:1",
        "self": True,
        "config_version": 3,
        "heartbeat_age_s": 10.0,
    }


def test_a_moved_sidecar_shows_where_it_is_connected_else_where_it_was_seen_last() -> None:
    old = entry("pp", "a", connected=False, last_seen="2026-01-01T00:00:09.000Z")
    new = entry("pp", "b", last_seen="2026-01-01T00:00:01.000Z")
    assert pick([old, new])["replica"] == "b"
    later = entry("pp", "c", connected=False, last_seen="2026-01-01T00:00:10.000Z")
    assert pick([old, later])["replica"] == "c"


def test_merge_lists_each_sidecar_once_sorted_by_id() -> None:
    merged = merge_sidecars([entry("z", "a"), entry("m", "a")], [entry("m", "b", connected=False), entry("b", "b")])
    assert [(e["id"], e["replica"]) for e in merged] == [("b", "b"), ("m", "a"), ("z", "a")]


def test_last_seen_alone_is_no_reason_to_rewrite_an_entry() -> None:
    first = entry("pp", "a", last_seen="2026-01-01T00:00:00.000Z")
    assert stable_part(first) == stable_part({**first, "last_seen": "2026-01-01T00:05:00.000Z"})
    assert stable_part(first) != stable_part({**first, "in_sync": False})


def test_a_heartbeat_is_parsed_or_ignored() -> None:
    body = {"replica": "a", "url": "u", "heartbeat_at": 5.0, "ttl": 1.0, "config_version": 2}
    pair = KVPair(key="p/status/replicas/a", value=json.dumps(body).encode(), modify_index=7)
    assert parse_replica(pair) == ReplicaInfo("a", "u", 5.0, 1.0, 2, 7)
    assert parse_replica(KVPair(key="p/status/replicas/x", value=b"junk", modify_index=1)) is None
