"""A gateway proxy's snapshot: listeners per Gateway port, virtual hosts from the VirtualServices bound to it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from mesh.control.translate import translate
from mesh.model.dump import snapshot_to_dict
from mesh.model.parse import parse_snapshot
from mesh.model.routing import select_route
from tests.mesh.control.helpers import instance, profile, rules
from tests.mesh.rules.helpers import doc, vs

CERT = {"mode": "SIMPLE", "serverCertificate": "/certs/bookinfo.pem", "privateKey": "/certs/bookinfo.key"}


def gateway(name: str = "bookinfo-gateway", namespace: str = "default", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "selector": {"istio": "ingressgateway"},
        "servers": [
            {"port": {"number": 8080, "name": "http", "protocol": "HTTP"}, "hosts": ["bookinfo.example.com"]},
            {
                "port": {"number": 8443, "name": "https", "protocol": "HTTPS"},
                "hosts": ["bookinfo.example.com"],
                "tls": CERT,
            },
        ],
    }
    body.update(spec)
    return doc("Gateway", name, body, namespace)


BOUND = vs(
    "bookinfo",
    hosts=["bookinfo.example.com"],
    gateways=["bookinfo-gateway"],
    http=[
        {"match": [{"uri": {"prefix": "/productpage"}}], "route": [{"destination": {"host": "productpage"}}]},
        {"match": [{"uri": {"prefix": "/api"}}], "route": [{"destination": {"host": "reviews"}}]},
    ],
)


def gateway_profile(**labels: str) -> Any:
    base = profile(service="istio-ingressgateway", labels=labels or {"istio": "ingressgateway"})
    return replace(base, bootstrap=parse_snapshot({}, version="bootstrap"), gateway_bind="127.0.0.1")


def catalog() -> dict[str, Any]:
    return {
        "productpage": (instance("productpage-1", address="10.0.0.9", port=9080),),
        "reviews": (instance("reviews-1", address="10.0.0.1", port=9080),),
    }


def test_listeners_routes_and_certificates() -> None:
    snapshot = translate(gateway_profile(), rules(gateway(), BOUND, vs()), catalog()).snapshot
    listeners = {listener.name: listener for listener in snapshot.listeners}
    assert sorted(listeners) == ["http.8080", "https.8443"]
    https = listeners["https.8443"]
    assert (https.host, https.port, https.route_table) == ("127.0.0.1", 8443, "https.8443")
    (certificate,) = https.tls
    assert (certificate.server_names, certificate.cert_file) == (("bookinfo.example.com",), "/certs/bookinfo.pem")
    assert listeners["http.8080"].tls == ()
    table = snapshot.route_tables["https.8443"]
    selected = select_route(table, "bookinfo.example.com:8443", "GET", "/productpage", "", {})
    assert selected is not None
    assert selected.route.clusters[0].name == "outbound|||productpage.default.svc.cluster.local"
    assert select_route(table, "bookinfo.example.com", "GET", "/api/v1", "", {}) is not None
    assert select_route(table, "other.example.com", "GET", "/productpage", "", {}) is None  # 404 (NR)
    assert select_route(table, "bookinfo.example.com", "GET", "/nothing", "", {}) is None
    # the mesh-only VirtualService (no gateways) is not the gateway's; the sidecar's routes are not either
    assert "reviews" not in {vhost.name for vhost in table.virtual_hosts}
    assert snapshot.clusters["outbound|||productpage.default.svc.cluster.local"].endpoints[0].host == "10.0.0.9"
    versioned = replace(snapshot, version="1")
    assert parse_snapshot(snapshot_to_dict(versioned)) == versioned


def test_https_redirect_and_unselected_proxies() -> None:
    redirecting = gateway(
        servers=[
            {
                "port": {"number": 8080, "name": "http", "protocol": "HTTP"},
                "hosts": ["*"],
                "tls": {"httpsRedirect": True},
            },
            {"port": {"number": 8443, "name": "https", "protocol": "HTTPS"}, "hosts": ["*"], "tls": CERT},
        ]
    )
    snapshot = translate(gateway_profile(), rules(redirecting, BOUND), catalog()).snapshot
    selected = select_route(snapshot.route_tables["http.8080"], "anything.example", "GET", "/x", "", {})
    assert selected is not None
    redirect = selected.route.redirect
    assert redirect is not None
    assert (redirect.scheme, redirect.port, redirect.response_code) == ("https", 8443, 301)
    other = translate(gateway_profile(istio="egressgateway"), rules(gateway(), BOUND), catalog()).snapshot
    assert other.listeners == ()


def test_namespace_qualified_binding_and_match_gateways() -> None:
    elsewhere = vs(
        "shop",
        namespace="shop",
        hosts=["shop.example.com"],
        gateways=["default/bookinfo-gateway"],
        http=[
            {
                "match": [{"uri": {"prefix": "/a"}, "gateways": ["default/bookinfo-gateway"]}],
                "route": [{"destination": {"host": "cart"}}],
            },
            {"match": [{"uri": {"prefix": "/b"}, "gateways": ["mesh"]}], "route": [{"destination": {"host": "cart"}}]},
        ],
    )
    wide = gateway(
        servers=[{"port": {"number": 8080, "name": "http", "protocol": "HTTP"}, "hosts": ["*/*.example.com"]}]
    )
    table = translate(gateway_profile(), rules(wide, elsewhere), {}).snapshot.route_tables["http.8080"]
    assert select_route(table, "shop.example.com", "GET", "/a", "", {}) is not None
    assert select_route(table, "shop.example.com", "GET", "/b", "", {}) is None  # that match is the mesh's only
    own_only = gateway(
        servers=[{"port": {"number": 8080, "name": "http", "protocol": "HTTP"}, "hosts": ["./*.example.com"]}]
    )
    table = translate(gateway_profile(), rules(own_only, elsewhere), {}).snapshot.route_tables["http.8080"]
    assert table.virtual_hosts == ()  # ./ admits VirtualServices of the Gateway's namespace only


def test_tls_passthrough_server_routes_by_sni() -> None:
    passthrough = gateway(
        servers=[
            {
                "port": {"number": 8443, "name": "tls", "protocol": "TLS"},
                "hosts": ["*.example.com"],
                "tls": {"mode": "PASSTHROUGH"},
            }
        ]
    )
    routes = vs(
        "tls-routes",
        hosts=["*.example.com"],
        gateways=["bookinfo-gateway"],
        tls=[
            {"match": [{"sniHosts": ["shop.example.com"]}], "route": [{"destination": {"host": "reviews"}}]},
            {"match": [{"sniHosts": ["api.example.com"]}], "route": [{"destination": {"host": "productpage"}}]},
            {"match": [{"sniHosts": ["other.org"]}], "route": [{"destination": {"host": "productpage"}}]},
        ],
    )
    snapshot = translate(gateway_profile(), rules(passthrough, routes), catalog()).snapshot
    (listener,) = snapshot.listeners
    assert (listener.name, listener.protocol, listener.port) == ("tls.8443", "tcp", 8443)
    assert [(r.server_names, r.cluster) for r in listener.sni_routes] == [
        (("shop.example.com",), "outbound|||reviews.default.svc.cluster.local"),
        (("api.example.com",), "outbound|||productpage.default.svc.cluster.local"),
    ]  # other.org is not a host the server admits
    versioned = replace(snapshot, version="1")
    assert parse_snapshot(snapshot_to_dict(versioned)) == versioned
    no_routes = translate(gateway_profile(), rules(passthrough), catalog()).snapshot
    assert no_routes.listeners == ()
