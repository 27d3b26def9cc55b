"""ServiceEntry validation: ports, resolution rules, endpoints."""

from __future__ import annotations

from typing import Any

import pytest

from mesh.model.reader import ConfigError
from mesh.rules.service_entry import ServiceEntrySpec
from tests.mesh.rules.helpers import parse, se, with_path

STATIC = se(
    hosts=["api.example.com"],
    ports=[{"number": 80, "name": "http", "protocol": "HTTP"}, {"number": 5432, "name": "pg", "protocol": "TCP"}],
    resolution="STATIC",
    endpoints=[{"address": "10.0.0.1", "ports": {"http": 8080}, "labels": {"version": "v1"}, "weight": 3}],
)


def test_static_service_entry_parses() -> None:
    spec = parse(STATIC).spec
    assert isinstance(spec, ServiceEntrySpec)
    http = spec.port(None)
    assert http is not None
    assert http.is_http
    assert http.number == 80
    assert spec.endpoints[0].port_for(http) == 8080
    pg = spec.port(5432)
    assert pg is not None
    assert spec.endpoints[0].port_for(pg) == 5432


@pytest.mark.parametrize(
    ("path", "value", "error_path", "text"),
    [
        ("spec.hosts", [], "spec.hosts", "at least one"),
        ("spec.ports", [], "spec.ports", "at least one"),
        ("spec.ports[0].number", 70000, "spec.ports[0].number", "1..65535"),
        ("spec.ports[1].number", 80, "spec.ports[1].number", "already ports[0]"),
        ("spec.ports[1].name", "http", "spec.ports[1].name", "already ports[0]"),
        ("spec.ports[1].name", "PG", "spec.ports[1].name", "port name"),
        ("spec.ports[1].protocol", "GRPC", "spec.ports[1].protocol", "not supported"),
        ("spec.ports[1].protocol", "SMTP", "spec.ports[1].protocol", "unknown protocol"),
        ("spec.resolution", "DNS_MAGIC", "spec.resolution", "one of"),
        ("spec.location", "INSIDE", "spec.location", "one of"),
        ("spec.endpoints[0].address", "db.example.com", "spec.endpoints[0].address", "STATIC needs IP"),
        ("spec.endpoints[0].ports", {"https": 443}, "spec.endpoints[0].ports.https", "no service port"),
        ("spec.endpoints[0].ports", {"http": 0}, "spec.endpoints[0].ports.http", "1..65535"),
        ("spec.endpoints", [], "spec.endpoints", "STATIC needs at least one"),
        ("spec.addresses", ["10.0.0.0/33"], "spec.addresses[0]", "CIDR"),
        ("spec.workloadSelector", {"labels": {"app": "x"}}, "spec.workloadSelector", "not supported"),
    ],
)
def test_invalid_service_entries_name_the_field(path: str, value: Any, error_path: str, text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(with_path(STATIC, path, value))
    assert info.value.path == error_path, info.value
    assert text in info.value.message


def test_dns_without_endpoints_cannot_resolve_a_wildcard() -> None:
    with pytest.raises(ConfigError) as info:
        parse(se(hosts=["*.example.com"], resolution="DNS"))
    assert info.value.path == "spec.hosts[0]"


def test_resolution_none_takes_no_endpoints() -> None:
    data = with_path(STATIC, "spec.resolution", "NONE")
    with pytest.raises(ConfigError) as info:
        parse(data)
    assert info.value.path == "spec.endpoints"
