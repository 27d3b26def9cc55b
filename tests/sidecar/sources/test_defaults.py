"""The standard layout from the sidecar's flags, and the flags' validation."""

from __future__ import annotations

import pytest

from discovery.runtime.addresses import split_host_port
from mesh.model.dump import snapshot_to_dict
from mesh.model.parse import parse_snapshot
from mesh.model.routing import select_route
from sidecar.sources.defaults import SidecarSettings, parse_upstream, standard_snapshot


def test_standard_snapshot_is_valid_and_routes_inbound_to_the_app() -> None:
    settings = SidecarSettings(
        service="web", app_port=8080, outbound_addr="127.0.0.1:25001", upstreams=(("db", 15432), ("cache", 16379))
    ).validate()
    snapshot = standard_snapshot(settings, "v1", (), {}, {})
    assert parse_snapshot(snapshot_to_dict(snapshot)) == snapshot  # every reference resolves
    assert [(li.name, li.host, li.port, li.cluster) for li in snapshot.listeners] == [
        ("outbound", "127.0.0.1", 25001, ""),
        ("inbound", "127.0.0.1", 15006, ""),
        ("upstream|db", "127.0.0.1", 15432, "tcp|db"),
        ("upstream|cache", "127.0.0.1", 16379, "tcp|cache"),
    ]
    selection = select_route(snapshot.route_tables["inbound"], "web.default.svc", "POST", "/x", "", {})
    assert selection is not None
    assert selection.route.clusters[0].name == "inbound|8080"
    assert selection.route.timeout_s is None
    local = snapshot.clusters["inbound|8080"]
    assert [(e.host, e.port) for e in local.endpoints] == [("127.0.0.1", 8080)]
    assert snapshot.clusters["tcp|db"].service == "db"


def test_without_an_app_port_there_is_no_inbound_listener() -> None:
    snapshot = standard_snapshot(SidecarSettings().validate(), "v1", (), {}, {})
    assert [li.name for li in snapshot.listeners] == ["outbound"]
    assert "inbound" not in snapshot.route_tables


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (SidecarSettings(app_port=0), "--app-port"),
        (SidecarSettings(app_port=70000), "--app-port"),
        (SidecarSettings(outbound_addr="15001"), "--outbound-addr: expected HOST:PORT"),
        (SidecarSettings(inbound_addr="127.0.0.1:15001"), "--inbound-addr: 127.0.0.1:15001 is also --outbound-addr"),
        (SidecarSettings(upstreams=(("db", 15006),)), "--upstream db=15006: 127.0.0.1:15006 is also --inbound-addr"),
        (SidecarSettings(upstreams=(("db", 1), ("db", 2))), "given twice"),
        (SidecarSettings(upstreams=(("d b", 1),)), "not a service name"),
        (SidecarSettings(upstreams=(("db", 0),)), "1-65535"),
    ],
)
def test_bad_settings_name_the_flag(settings: SidecarSettings, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        settings.validate()


def test_parse_upstream_and_addresses() -> None:
    assert parse_upstream("db=15432") == ("db", 15432)
    for bad in ("db", "db=", "=1", "db=x"):
        with pytest.raises(ValueError, match="NAME=LOCALPORT"):
            parse_upstream(bad)
    assert split_host_port("[::1]:15001", name="--x") == ("::1", 15001)
    with pytest.raises(ValueError, match="--x"):
        split_host_port("host:99999", name="--x")
