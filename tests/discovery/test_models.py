"""Records: immutability, change detection without indexes, and the persisted (JSON) form."""

from __future__ import annotations

import dataclasses
import json
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from discovery.models import (
    CRITICAL,
    EMPTY_MAP,
    MAINTENANCE,
    PASSING,
    WARNING,
    Check,
    CheckDefinition,
    KVEntry,
    Node,
    Service,
    TaggedAddress,
    Weights,
    check_from_record,
    check_to_record,
    kv_from_record,
    kv_to_record,
    node_from_record,
    node_to_record,
    service_from_record,
    service_to_record,
    worst_status,
)


def through_json(data: dict[str, Any]) -> Any:
    return json.loads(json.dumps(data))


NODE = Node(
    name="n1",
    address="10.0.0.1",
    id="6f1f0c1e-0000-4000-8000-000000000001",
    tagged_addresses=MappingProxyType({"lan": "10.0.0.1", "wan": "198.51.100.1"}),
    meta=MappingProxyType({"rack": "r1", "consul-network-segment": ""}),
    create_index=3,
    modify_index=9,
)
SERVICE = Service(
    node="n1",
    id="web-1",
    name="web",
    tags=("v1", "canary"),
    address="10.0.0.5",
    port=8080,
    meta=MappingProxyType({"Version": "1.2", "team_name": "core"}),
    tagged_addresses=MappingProxyType({"lan_ipv4": TaggedAddress("10.0.0.5", 8080)}),
    weights=Weights(passing=10, warning=0),
    enable_tag_override=True,
    kind="connect-proxy",
    create_index=4,
    modify_index=12,
)
CHECK = Check(
    node="n1",
    check_id="service:web-1",
    name="Service 'web' check",
    status=WARNING,
    notes="n",
    output="HTTP GET ...: 429 Too Many Requests",
    service_id="web-1",
    service_name="web",
    definition=CheckDefinition(
        http="https://127.0.0.1:8443/health",
        method="POST",
        header=MappingProxyType({"X-Token": ("a", "b")}),
        body="{}",
        tls_skip_verify=True,
        tls_server_name="web.internal",
        interval=1.5,
        timeout=0.25,
        deregister_critical_after=90.0,
        success_before_passing=2,
        failures_before_critical=3,
    ),
    create_index=5,
    modify_index=13,
)
KV = KVEntry(key="app/cfg", value=b"\x00\xffbinary", flags=2**64 - 1, create_index=6, modify_index=14, lock_index=2)


def test_node_round_trip() -> None:
    assert node_from_record(through_json(node_to_record(NODE))) == NODE


def test_service_round_trip() -> None:
    assert service_from_record(through_json(service_to_record(SERVICE))) == SERVICE


def test_check_round_trip() -> None:
    assert check_from_record(through_json(check_to_record(CHECK))) == CHECK


def test_kv_round_trip() -> None:
    assert kv_from_record(through_json(kv_to_record(KV))) == KV
    empty = KVEntry(key="e")
    assert kv_from_record(through_json(kv_to_record(empty))) == empty


def test_defaults_round_trip() -> None:
    n, s, c = Node("a", "1.2.3.4"), Service("a", "x", "x"), Check("a", "c", "c")
    assert node_from_record(through_json(node_to_record(n))) == n
    assert service_from_record(through_json(service_to_record(s))) == s
    assert check_from_record(through_json(check_to_record(c))) == c
    assert c.status == CRITICAL, "Consul's default initial status"
    assert s.weights == Weights(1, 1)


def test_loaded_records_are_read_only() -> None:
    loaded = service_from_record(through_json(service_to_record(SERVICE)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        loaded.port = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        loaded.meta["x"] = "y"  # type: ignore[index]
    check = check_from_record(through_json(check_to_record(CHECK)))
    with pytest.raises(TypeError):
        check.definition.header["X"] = ("z",)  # type: ignore[index]
    assert node_from_record(through_json(node_to_record(Node("a", "b")))).meta is EMPTY_MAP


def test_same_content_ignores_indexes_only() -> None:
    assert SERVICE.same_content(dataclasses.replace(SERVICE, create_index=0, modify_index=0))
    assert NODE.same_content(dataclasses.replace(NODE, meta={"rack": "r1", "consul-network-segment": ""}))
    assert CHECK.same_content(dataclasses.replace(CHECK, modify_index=99))
    for changed in (
        dataclasses.replace(SERVICE, port=8081),
        dataclasses.replace(SERVICE, tags=("canary", "v1")),
        dataclasses.replace(SERVICE, meta={"Version": "1.3", "team_name": "core"}),
        dataclasses.replace(SERVICE, weights=Weights(10, 1)),
        dataclasses.replace(SERVICE, tagged_addresses={"lan_ipv4": TaggedAddress("10.0.0.5", 1)}),
    ):
        assert not SERVICE.same_content(changed)
    assert not CHECK.same_content(dataclasses.replace(CHECK, output="other"))
    assert not CHECK.same_content(
        dataclasses.replace(CHECK, definition=dataclasses.replace(CHECK.definition, header={"X-Token": ("a",)}))
    )
    assert not NODE.same_content(dataclasses.replace(NODE, address="10.0.0.2"))


def test_check_kind() -> None:
    assert CheckDefinition(http="http://x").kind == "http"
    assert CheckDefinition(tcp="h:1").kind == "tcp"
    assert CheckDefinition(ttl=5).kind == "ttl"
    assert CheckDefinition().kind == ""


@pytest.mark.parametrize(
    ("statuses", "worst"),
    [
        ([], PASSING),
        ([PASSING, PASSING], PASSING),
        ([PASSING, WARNING], WARNING),
        ([WARNING, CRITICAL, PASSING], CRITICAL),
        ([CRITICAL, MAINTENANCE], MAINTENANCE),
    ],
)
def test_worst_status(statuses: list[str], worst: str) -> None:
    assert worst_status(statuses) == worst


text = st.text(max_size=8)
maps = st.dictionaries(st.from_regex(r"[A-Za-z0-9_-]{1,8}", fullmatch=True), text, max_size=3)


@given(
    st.builds(
        Service,
        node=text,
        id=text,
        name=text,
        tags=st.lists(text, max_size=3).map(tuple),
        address=text,
        port=st.integers(0, 65535),
        meta=maps.map(MappingProxyType),
        tagged_addresses=st.dictionaries(
            st.sampled_from(("lan", "wan", "lan_ipv4")), st.builds(TaggedAddress, text, st.integers(0, 65535))
        ).map(MappingProxyType),
        weights=st.builds(Weights, st.integers(1, 100), st.integers(0, 100)),
        enable_tag_override=st.booleans(),
        kind=text,
        create_index=st.integers(0, 2**40),
        modify_index=st.integers(0, 2**40),
    )
)
def test_any_service_round_trips(service: Service) -> None:
    assert service_from_record(through_json(service_to_record(service))) == service


@given(st.binary(max_size=64), st.integers(0, 2**64 - 1), st.text(min_size=1, max_size=16))
def test_any_kv_round_trips(value: bytes, flags: int, key: str) -> None:
    entry = KVEntry(key=key, value=value, flags=flags, create_index=1, modify_index=2)
    assert kv_from_record(through_json(kv_to_record(entry))) == entry
