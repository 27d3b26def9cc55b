"""Gateway: validated as Istio validates it, overlapping hosts refused within and across Gateways."""

from __future__ import annotations

from typing import Any

import pytest

from mesh.model.reader import ConfigError
from mesh.rules.checks import check_rules
from mesh.rules.gateway import GatewayHost, GatewaySpec, ServerTls
from mesh.rules.ruleset import RuleSet
from tests.mesh.rules.helpers import doc, parse

TLS = {"mode": "SIMPLE", "serverCertificate": "/etc/certs/tls.crt", "privateKey": "/etc/certs/tls.key"}


def server(number: int, protocol: str, hosts: list[str], **extra: Any) -> dict[str, Any]:
    return {"port": {"number": number, "name": protocol.lower(), "protocol": protocol}, "hosts": hosts, **extra}


def test_gateway_parses() -> None:
    spec = parse(
        doc(
            "Gateway",
            "gw",
            {
                "selector": {"istio": "ingressgateway"},
                "servers": [
                    server(80, "HTTP", ["bookinfo.example.com"], tls={"httpsRedirect": True}),
                    server(443, "HTTPS", ["default/bookinfo.example.com", "*/*.shop.example.com"], tls=TLS),
                ],
            },
        )
    ).spec
    assert isinstance(spec, GatewaySpec)
    assert spec.selector == (("istio", "ingressgateway"),)
    http, https = spec.servers
    assert http.tls == ServerTls(https_redirect=True)
    assert https.hosts == (GatewayHost("default", "bookinfo.example.com"), GatewayHost("*", "*.shop.example.com"))
    assert https.tls.server_certificate == "/etc/certs/tls.crt"


def gw(*servers: dict[str, Any]) -> dict[str, Any]:
    return {"selector": {"istio": "ingressgateway"}, "servers": list(servers)}


@pytest.mark.parametrize(
    ("spec", "error_path", "text"),
    [
        ({"selector": {}}, "spec.servers", "required"),
        (gw(server(443, "HTTPS", ["a.com"])), "spec.servers[0].tls", "needs tls"),
        (
            gw(server(443, "HTTPS", ["a.com"], tls={"mode": "SIMPLE"})),
            "spec.servers[0].tls.serverCertificate",
            "required",
        ),
        (
            gw(server(443, "HTTPS", ["a.com"], tls={**TLS, "privateKey": "tls.key"})),
            "spec.servers[0].tls.privateKey",
            "absolute path",
        ),
        (
            gw(server(443, "HTTPS", ["a.com"], tls={**TLS, "mode": "MUTUAL"})),
            "spec.servers[0].tls.caCertificates",
            "MUTUAL",
        ),
        (gw(server(443, "HTTPS", ["a.com"], tls={"mode": "PASSTHROUGH"})), "spec.servers[0].tls.mode", "protocol TLS"),
        (
            gw(server(443, "HTTPS", ["a.com"], tls={"mode": "AUTO_PASSTHROUGH"})),
            "spec.servers[0].tls.mode",
            "not supported",
        ),
        (gw(server(443, "TLS", ["a.com"], tls=TLS)), "spec.servers[0].tls.mode", "PASSTHROUGH"),
        (gw(server(443, "TLS", ["a.com"])), "spec.servers[0].tls", "PASSTHROUGH"),
        (
            gw(server(443, "HTTPS", ["a.com"], tls={"mode": "SIMPLE", "credentialName": "c"})),
            "spec.servers[0].tls.credentialName",
            "not supported",
        ),
        (gw(server(80, "HTTP", ["a.com"], tls=TLS)), "spec.servers[0].tls", "only httpsRedirect"),
        (gw(server(80, "TCP", ["a.com"])), "spec.servers[0].port.protocol", "not supported"),
        (gw(server(80, "FTP", ["a.com"])), "spec.servers[0].port.protocol", "one of"),
        (gw(server(80, "HTTP", [])), "spec.servers[0].hosts", "at least one"),
        (gw(server(80, "HTTP", ["not a host"])), "spec.servers[0].hosts[0]", "invalid host"),
        (gw(server(0, "HTTP", ["a.com"])), "spec.servers[0].port.number", "1..65535"),
        (
            gw(server(80, "HTTP", ["a.com"]), server(80, "HTTPS", ["b.com"], tls=TLS)),
            "spec.servers[1].port.protocol",
            "one protocol per port",
        ),
        (
            gw(server(80, "HTTP", ["*.a.com"]), server(80, "HTTP", ["x.a.com"])),
            "spec.servers[1].hosts",
            "already served on port 80",
        ),
    ],
)
def test_invalid_gateways_name_the_field(spec: dict[str, Any], error_path: str, text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(doc("Gateway", "gw", spec))
    assert info.value.path == error_path, info.value
    assert text in info.value.message, info.value


def test_overlapping_hosts_across_gateways_for_the_same_proxies_are_refused() -> None:
    first = parse(doc("Gateway", "first", gw(server(8080, "HTTP", ["*.example.com"]))))
    second = parse(doc("Gateway", "second", gw(server(8080, "HTTP", ["shop.example.com"]))))
    other_port = parse(doc("Gateway", "third", gw(server(9090, "HTTP", ["shop.example.com"]))))
    other_proxies = parse(
        doc("Gateway", "fourth", {**gw(server(8080, "HTTP", ["shop.example.com"])), "selector": {"istio": "egress"}})
    )
    check_rules(RuleSet.build([first, other_port, other_proxies]), [first.key, other_port.key, other_proxies.key])
    with pytest.raises(ConfigError) as info:
        check_rules(RuleSet.build([first, second]), [second.key])
    assert info.value.path == "spec.servers[0].hosts"
    assert "Gateway default/first" in info.value.message
