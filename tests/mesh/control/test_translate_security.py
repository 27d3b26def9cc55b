"""The security section the control plane puts into a sidecar's snapshot."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from mesh.control.translate import Profile, translate
from mesh.model.dump import snapshot_to_dict
from mesh.model.parse import parse_snapshot
from tests.mesh.control.helpers import BOOTSTRAP, instance, profile, rules
from tests.mesh.rules.helpers import doc, dr, vs
from tests.mesh.security.jwt_keys import ISSUER, jwks, rsa_key

MESH = {"mesh-tls-mode": "istio"}


def pa(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    return doc("PeerAuthentication", name, spec, namespace)


def ap(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    return doc("AuthorizationPolicy", name, spec, namespace)


def catalog() -> dict[str, Any]:
    return {
        "reviews": (
            instance("reviews-1", address="10.0.0.1", meta=MESH),
            instance("reviews-2", address="10.0.0.2", tags=["security.istio.io/tlsMode=istio"]),
            instance("reviews-legacy", address="10.0.0.3"),  # no sidecar
        )
    }


def inbound_profile(app_port: int = 9080, **labels: str) -> Profile:
    data = dict(BOOTSTRAP)
    data["listeners"] = [
        *BOOTSTRAP["listeners"],
        {"name": "inbound", "protocol": "http", "port": 15006, "direction": "inbound", "route_table": "inbound"},
    ]
    data["route_tables"] = [
        *BOOTSTRAP.get("route_tables", []),
        {
            "name": "inbound",
            "virtual_hosts": [
                {
                    "name": "local",
                    "domains": ["*"],
                    "routes": [{"name": "local", "match": {"prefix": "/"}, "cluster": "local"}],
                }
            ],
        },
    ]
    data["clusters"] = [
        *BOOTSTRAP["clusters"],
        {"name": "local", "endpoints": [{"host": "127.0.0.1", "port": app_port}]},
    ]
    base = profile(service="ratings", labels=labels or {"app": "ratings"})
    return replace(base, bootstrap=parse_snapshot(data, version="bootstrap"))


def test_mode_default_namespace_and_workload_levels_and_port_level() -> None:
    assert translate(profile(), rules(), {}).snapshot.security.mtls_mode == "PERMISSIVE"
    mesh_wide = pa("default", "istio-system", mtls={"mode": "STRICT"})
    assert translate(profile(), rules(mesh_wide), {}).snapshot.security.mtls_mode == "STRICT"
    namespace = pa("ns", "default", mtls={"mode": "DISABLE"})
    assert translate(profile(), rules(mesh_wide, namespace), {}).snapshot.security.mtls_mode == "DISABLE"
    workload = pa(
        "ratings",
        "default",
        selector={"matchLabels": {"app": "ratings"}},
        mtls={"mode": "STRICT"},
        portLevelMtls={"9080": {"mode": "PERMISSIVE"}},
    )
    security = translate(inbound_profile(), rules(mesh_wide, namespace, workload), {}).snapshot.security
    assert security.mtls_mode == "STRICT"
    assert dict(security.port_modes) == {15006: "PERMISSIVE"}  # the listener in front of app port 9080
    other_port = translate(inbound_profile(8080), rules(workload), {}).snapshot.security
    assert dict(other_port.port_modes) == {}


def test_only_policies_selecting_the_workload_travel_and_round_trip() -> None:
    selected = ap(
        "allow-sleep",
        "default",
        selector={"matchLabels": {"app": "ratings"}},
        rules=[{"from": [{"source": {"principals": ["cluster.local/ns/default/sa/sleep"]}}]}],
    )
    root = ap(
        "deny-all-delete", "istio-system", action="DENY", rules=[{"to": [{"operation": {"methods": ["DELETE"]}}]}]
    )
    other_ns = ap("elsewhere", "shop", rules=[{}])
    other_app = ap("other-app", "default", selector={"matchLabels": {"app": "reviews"}}, rules=[{}])
    translation = translate(inbound_profile(), rules(selected, root, other_ns, other_app), {})
    security = translation.snapshot.security
    assert sorted(f"{p.namespace}/{p.name}" for p in security.policies) == [
        "default/allow-sleep",
        "istio-system/deny-all-delete",
    ]
    snapshot = replace(translation.snapshot, version="1")
    assert parse_snapshot(snapshot_to_dict(snapshot)) == snapshot


def test_mesh_endpoints_from_registry_labels_and_destination_rule_overrides() -> None:
    demanded = profile("reviews")
    security = translate(demanded, rules(vs()), catalog()).snapshot.security
    assert security.mtls_endpoints == frozenset({"10.0.0.1:9080", "10.0.0.2:9080"})
    istio_mutual = dr(subsets=[], trafficPolicy={"tls": {"mode": "ISTIO_MUTUAL"}})
    security = translate(demanded, rules(vs(), istio_mutual), catalog()).snapshot.security
    assert security.mtls_endpoints == frozenset({"10.0.0.1:9080", "10.0.0.2:9080", "10.0.0.3:9080"})
    disable = dr(subsets=[], trafficPolicy={"tls": {"mode": "DISABLE"}})
    assert translate(demanded, rules(vs(), disable), catalog()).snapshot.security.mtls_endpoints == frozenset()


def test_expected_identities_of_mesh_endpoints() -> None:
    security = translate(profile("reviews"), rules(vs()), catalog()).snapshot.security
    assert dict(security.expected_identities) == {
        "10.0.0.1:9080": "ns/default/sa/reviews",
        "10.0.0.2:9080": "ns/default/sa/reviews",
    }


def test_request_authentication_travels_with_its_keys_inline() -> None:
    keys = jwks(rsa_key())
    by_uri = doc(
        "RequestAuthentication",
        "jwt",
        {
            "selector": {"matchLabels": {"app": "ratings"}},
            "jwtRules": [{"issuer": ISSUER, "jwksUri": "https://issuer.example.com/keys", "audiences": ["web"]}],
        },
        "default",
    )
    unfetched = doc("RequestAuthentication", "other", {"jwtRules": [{"issuer": "https://other.example"}]}, "default")
    elsewhere = doc("RequestAuthentication", "shop", {"jwtRules": [{"issuer": "https://shop.example"}]}, "shop")
    ruleset = rules(by_uri, unfetched, elsewhere).with_context(
        {"https://issuer.example.com/keys": keys}, "REGISTRY_ONLY"
    )
    translation = translate(inbound_profile(), ruleset, {})
    security = translation.snapshot.security
    assert [entry.name for entry in security.request_authentication] == ["jwt", "other"]
    first, second = security.jwt_rules()
    assert (first.jwks, first.jwks_uri, first.audiences) == (keys, "", ("web",))
    assert (second.jwks, second.jwks_uri) == ("", "")  # discovery not answered yet: no keys, tokens rejected
    dumped = snapshot_to_dict(replace(translation.snapshot, version="1"))
    rule_data = dumped["security"]["request_authentication"][0]["spec"]["jwtRules"][0]
    assert rule_data == {"issuer": ISSUER, "jwks": keys, "audiences": ["web"]}
    assert parse_snapshot(dumped) == replace(translation.snapshot, version="1")
