"""Request bodies into records (pure functions, no sockets): Consul's lenient keys and precise error paths."""

from __future__ import annotations

import json
from typing import Any

import pytest

from discovery.api.decode import (
    Fields,
    decode_agent_check,
    decode_agent_service,
    decode_catalog_deregister,
    decode_catalog_register,
    decode_check_update,
    parse_json,
)
from discovery.api.errors import ApiError
from discovery.models import CRITICAL, PASSING, WARNING, TaggedAddress, Weights


def refused(call: Any, *args: Any, status: int = 400) -> str:
    with pytest.raises(ApiError) as info:
        call(*args)
    assert info.value.status == status, info.value.message
    return info.value.message


# === keys ===


def test_keys_are_matched_case_insensitively() -> None:
    req = decode_agent_service(
        {
            "NAME": "web",
            "id": "web-1",
            "PoRt": 8080,
            "tags": ["a", "B"],
            "ADDRESS": "10.0.0.5",
            "enabletagoverride": True,
        },
        "n1",
    )
    s = req.service
    assert (s.name, s.id, s.port, s.tags, s.address, s.enable_tag_override) == (
        "web",
        "web-1",
        8080,
        ("a", "B"),
        "10.0.0.5",
        True,
    )
    assert s.node == "n1"


def test_snake_case_keys_as_py_consul_sends_them() -> None:
    body = {
        "name": "api",
        "id": "api-1",
        "port": 9000,
        "tags": ["v2"],
        "meta": {"version": "2"},
        "enable_tag_override": True,
        "tagged_addresses": {"lan": {"address": "10.0.0.9", "port": 9000}},
        "weights": {"passing": 3, "warning": 1},
        "checks": [
            {
                "http": "http://127.0.0.1:9000/health",
                "interval": "10s",
                "timeout": "2s",
                "DeregisterCriticalServiceAfter": "1m",
            },
            {"ttl": "15s", "notes": "heartbeat", "check_id": "hb"},
            None,  # py-consul's extra_checks placeholder
        ],
    }
    req = decode_agent_service(body, "n1")
    s = req.service
    assert s.enable_tag_override
    assert s.weights == Weights(3, 1)
    assert s.tagged_addresses == {"lan": TaggedAddress("10.0.0.9", 9000)}
    http, ttl = req.checks
    assert http.check_id == "service:api-1:1"
    assert (http.definition.http, http.definition.interval, http.definition.timeout) == (
        "http://127.0.0.1:9000/health",
        10.0,
        2.0,
    )
    assert http.definition.deregister_critical_after == 60.0
    assert (ttl.check_id, ttl.definition.ttl, ttl.notes) == ("hb", 15.0, "heartbeat")
    assert all(c.service_id == "api-1" and c.service_name == "api" for c in req.checks)


def test_check_register_with_lowercase_serviceid() -> None:
    check = decode_agent_check({"name": "mem", "serviceid": "web-1", "ttl": "30s", "status": "passing"}, "n1")
    assert (check.check_id, check.name, check.service_id, check.status) == ("mem", "mem", "web-1", PASSING)


def test_meta_and_header_keys_are_kept_verbatim() -> None:
    meta = {"Owner_Team": "core", "version": "1", "Mixed-Case_key": "x"}
    header = {"X-Api-Key": ["k"], "accept_language": ["en"]}
    req = decode_agent_service(
        {"Name": "web", "Meta": meta, "Check": {"HTTP": "http://h/", "Interval": "5s", "Header": header}}, "n1"
    )
    assert dict(req.service.meta) == meta
    assert {k: list(v) for k, v in req.checks[0].definition.header.items()} == header
    reg = decode_catalog_register(
        {
            "node": "n2",
            "address": "10.0.0.2",
            "node_meta": {"Rack_ID": "r1"},
            "TaggedAddresses": {"wan_ipv4": "1.2.3.4"},
        },
        "dc1",
    )
    assert dict(reg.node.meta) == {"Rack_ID": "r1"}
    assert dict(reg.node.tagged_addresses) == {"wan_ipv4": "1.2.3.4"}


def test_service_tagged_address_keys_are_kept_verbatim() -> None:
    req = decode_agent_service(
        {"Name": "web", "TaggedAddresses": {"lan_ipv4": {"Address": "10.0.0.5", "Port": 80}}}, "n1"
    )
    assert set(req.service.tagged_addresses) == {"lan_ipv4"}


def test_fields_treats_null_as_absent() -> None:
    f = Fields({"Name": None, "Port": None}, "")
    assert not f.has("Name")
    assert f.text("Name", default="d") == "d"
    assert f.integer("Port", default=7) == 7


# === defaults ===


def test_service_and_check_defaults() -> None:
    req = decode_agent_service({"Name": "web", "Check": {"TTL": "10s"}}, "n1")
    s, (c,) = req.service, req.checks
    assert s.id == "web"
    assert s.weights == Weights(1, 1)
    assert s.tags == ()
    assert (c.check_id, c.name, c.status) == ("service:web", "Service 'web' check", CRITICAL)
    assert c.definition.timeout == 0.0
    assert c.definition.interval == 0.0


def test_probe_defaults_and_interval_floor() -> None:
    (c,) = decode_agent_service({"Name": "web", "Check": {"TCP": "127.0.0.1:80", "Interval": "100ms"}}, "n1").checks
    assert c.definition.interval == 1.0, "Consul's MinInterval"
    assert c.definition.timeout == 10.0


def test_integer_durations_are_nanoseconds() -> None:
    (c,) = decode_agent_service({"Name": "web", "Check": {"HTTP": "http://h/", "Interval": 2_000_000_000}}, "n1").checks
    assert c.definition.interval == 2.0


def test_empty_check_object_is_ignored() -> None:
    assert decode_agent_service({"Name": "web", "Check": {}}, "n1").checks == ()


def test_initial_status_and_method() -> None:
    (c,) = decode_agent_service(
        {"Name": "web", "Check": {"HTTP": "https://h/x", "Interval": "5s", "Method": "post", "Status": "warning"}}, "n1"
    ).checks
    assert (c.status, c.definition.method) == (WARNING, "POST")


def test_check_update_body() -> None:
    assert decode_check_update({"status": "warning", "output": "slow"}) == (WARNING, "slow")
    assert "Status" in refused(decode_check_update, {"Output": "x"})


# === errors name the field ===


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"Name": "w", "Checks": [{"TTL": "5s"}, {"HTTP": "http://h/", "Interval": "10x"}]}, "Checks[1].Interval"),
        ({"name": "w", "checks": [{"ttl": "5s"}, {"http": "http://h/", "interval": "10x"}]}, "Checks[1].Interval"),
        ({"Name": "w", "Checks": [{"HTTP": "ftp://h/", "Interval": "1s"}]}, "Checks[0].HTTP"),
        ({"Name": "w", "Checks": [{"TCP": "no-port", "Interval": "1s"}]}, "Checks[0].TCP"),
        ({"Name": "w", "Checks": [{"TCP": "h:1"}]}, "Checks[0].Interval"),
        ({"Name": "w", "Check": {"TTL": "soon"}}, "Check.TTL"),
        ({"Name": "w", "Check": {"TTL": "-5s"}}, "Check.TTL"),
        ({"Name": "w", "Check": {"TTL": "5s", "Status": "fine"}}, "Check.Status"),
        (
            {"Name": "w", "Check": {"TTL": "5s", "DeregisterCriticalServiceAfter": "1 minute"}},
            "Check.DeregisterCriticalServiceAfter",
        ),
        ({"Name": "w", "Check": {"TTL": "5s", "HTTP": "http://h/"}}, "Check.TTL"),
        ({"Name": "w", "Check": {"Args": ["/bin/true"], "Interval": "5s"}}, "Check.Args"),
        ({"Name": "w", "Check": {"TTL": "5s", "Header": {"X": "not-a-list"}}}, "Check.Header"),
        ({"Name": "w", "Check": {"TTL": "5s", "SuccessBeforePassing": -1}}, "Check.SuccessBeforePassing"),
        ({"Name": "w", "Checks": {"TTL": "5s"}}, "Checks"),
        ({"Name": "w", "Checks": ["ttl"]}, "Checks[0]"),
        ({"Name": "w", "Port": 70000}, "Port"),
        ({"Name": "w", "Port": "80"}, "Port"),
        ({"Name": "w", "Port": 80.5}, "Port"),
        ({"Name": "w", "Tags": "a,b"}, "Tags"),
        ({"Name": "w", "Address": 5}, "Address"),
        ({"Name": "w", "EnableTagOverride": "yes"}, "EnableTagOverride"),
        ({"Name": "w", "Weights": {"Passing": 0}}, "Weights.Passing"),
        ({"Name": "w", "TaggedAddresses": {"lan": {"Address": "a", "Port": -1}}}, "TaggedAddresses.lan.Port"),
        ({"Name": "w", "Meta": {"bad key": "x"}}, "Meta['bad key']"),
        ({"Name": "w", "Meta": {"consul-x": "x"}}, "Meta['consul-x']"),
        ({"Name": "w", "Meta": {"k": "v" * 513}}, "Meta['k']"),
        ({"Name": "w", "Meta": {"k": 1}}, "Meta"),
        ({"Name": "w", "Meta": {f"k{i}": "" for i in range(65)}}, "Meta"),
    ],
)
def test_agent_service_errors_name_the_field_path(body: dict[str, Any], path: str) -> None:
    message = refused(decode_agent_service, body, "n1")
    assert message.startswith(f"Invalid {path}:"), message


def test_check_without_a_type_names_its_position() -> None:
    message = refused(decode_agent_service, {"Name": "w", "Checks": [{"TTL": "1s"}, {"Notes": "x"}]}, "n1")
    assert message.startswith("Invalid Checks[1]:")
    assert "TTL" in message
    assert "HTTP" in message


def test_missing_service_name() -> None:
    assert "Name is required" in refused(decode_agent_service, {"ID": "x"}, "n1")


def test_duplicate_check_ids() -> None:
    body = {"Name": "w", "Checks": [{"TTL": "1s", "CheckID": "a"}, {"TTL": "2s", "ID": "a"}]}
    assert "duplicate CheckID 'a'" in refused(decode_agent_service, body, "n1")


def test_agent_check_needs_a_name() -> None:
    assert refused(decode_agent_check, {"TTL": "5s"}, "n1").startswith("Invalid Name:")


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"Node": "n2", "Address": "a", "Service": {"Service": "db", "Port": "x"}}, "Service.Port"),
        ({"Node": "n2", "Address": "a", "Service": {"Port": 1}}, "Service.Service"),
        ({"Node": "n2", "Address": "a", "Service": {"Service": "db", "Meta": {"a b": ""}}}, "Service.Meta['a b']"),
        ({"Node": "n2", "Address": "a", "Check": {"Name": "c", "Status": "bad"}}, "Check.Status"),
        ({"Node": "n2", "Address": "a", "Checks": [{"Name": "c"}, {"Notes": "no id"}]}, "Checks[1].CheckID"),
        ({"Node": "n2", "Address": "a", "Checks": [{"Name": "c", "Node": "other"}]}, "Checks[0].Node"),
        (
            {"Node": "n2", "Address": "a", "Check": {"Name": "c", "Definition": {"Interval": "1y"}}},
            "Check.Definition.Interval",
        ),
        ({"Node": "n2", "Address": "a", "NodeMeta": {"k": ["v"]}}, "NodeMeta"),
    ],
)
def test_catalog_register_errors_name_the_field_path(body: dict[str, Any], path: str) -> None:
    message = refused(decode_catalog_register, body, "dc1")
    assert message.startswith(f"Invalid {path}:"), message


# === catalog bodies ===


def test_catalog_register_decodes_node_service_and_checks() -> None:
    reg = decode_catalog_register(
        {
            "node": "n2",
            "address": "10.0.0.2",
            "ID": "uuid-2",
            "NodeMeta": {"consul-network-segment": ""},
            "Service": {"service": "db", "port": 5432, "tags": ["primary"]},
            "Checks": [
                {"Name": "db alive", "ServiceID": "db", "Status": "passing"},
                {"CheckID": "mem", "Status": "warning", "Definition": {"TCP": "h:1", "Interval": "5s"}},
            ],
            "SkipNodeUpdate": True,
        },
        "dc1",
    )
    assert (reg.node.name, reg.node.address, reg.node.id, reg.node.datacenter) == ("n2", "10.0.0.2", "uuid-2", "dc1")
    assert reg.service is not None
    assert (reg.service.id, reg.service.name, reg.service.node) == ("db", "db", "n2")
    alive, mem = reg.checks
    assert (alive.check_id, alive.service_id, alive.service_name, alive.status) == ("db alive", "db", "db", PASSING)
    assert (mem.name, mem.service_name, mem.definition.tcp, mem.definition.interval) == ("mem", "", "h:1", 5.0)
    assert reg.skip_node_update


def test_catalog_register_required_fields_and_datacenter() -> None:
    assert "Node is required" in refused(decode_catalog_register, {"Address": "a"}, "dc1")
    assert "Address is required" in refused(decode_catalog_register, {"Node": "n"}, "dc1")
    assert "dc9" in refused(
        decode_catalog_register, {"Node": "n", "Address": "a", "Datacenter": "dc9"}, "dc1", status=500
    )
    assert decode_catalog_register({"Node": "n", "Address": "a", "Datacenter": "dc1"}, "dc1").node.name == "n"


def test_catalog_deregister() -> None:
    d = decode_catalog_deregister({"node": "n2", "serviceid": "db"}, "dc1")
    assert (d.node, d.service_id, d.check_id) == ("n2", "db", "")
    assert "Node is required" in refused(decode_catalog_deregister, {"ServiceID": "db"}, "dc1")


# === JSON ===


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [(b"", "empty body"), (b"  \n", "empty body"), (b"{not json", "Request decode failed"), (b"\xff\xfe", "decode")],
)
def test_parse_json_errors(raw: bytes, fragment: str) -> None:
    assert fragment in refused(parse_json, raw)


@pytest.mark.parametrize("body", [[], "x", 3, None])
def test_body_must_be_an_object(body: Any) -> None:
    message = refused(decode_agent_service, json.loads(json.dumps(body)), "n1")
    assert "expected a JSON object" in message
