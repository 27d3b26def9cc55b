"""Explain's security part: the mTLS mode and the authorization decision at each destination workload."""

from __future__ import annotations

from typing import Any

from mesh.control.explain import explain_request
from mesh.control.explain_security import security_view
from mesh.control.state import ConfigState, StoredResource
from mesh.control.translate import translate
from mesh.rules.resource import parse_resource
from mesh.security.identity import SpiffeId
from tests.mesh.control.fixtures import register
from tests.mesh.control.helpers import profile, reviews_catalog
from tests.mesh.rules.helpers import doc, dr, vs

PRODUCTPAGE = SpiffeId("cluster.local", "default", "productpage")
DOCS = [
    dr(subsets=[{"name": "v1", "labels": {"version": "v1"}}, {"name": "v3", "labels": {"version": "v3"}}]),
    vs(
        http=[
            {
                "match": [{"headers": {"end-user": {"exact": "jason"}}}],
                "route": [{"destination": {"host": "reviews", "subset": "v3"}}],
            },
            {
                "route": [
                    {"destination": {"host": "reviews", "subset": "v1"}, "weight": 50},
                    {"destination": {"host": "reviews", "subset": "v3"}, "weight": 50},
                ]
            },
        ]
    ),
    doc(
        "AuthorizationPolicy",
        "v3-get-from-productpage",
        {
            "selector": {"matchLabels": {"version": "v3"}},
            "rules": [
                {
                    "from": [{"source": {"principals": ["cluster.local/ns/default/sa/productpage"]}}],
                    "to": [{"operation": {"methods": ["GET"]}}],
                }
            ],
        },
    ),
    doc(
        "AuthorizationPolicy",
        "no-admin",
        {"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/admin*"]}}]}]},
        namespace="istio-system",
    ),
    doc("PeerAuthentication", "default", {"mtls": {"mode": "STRICT"}}),
    doc(
        "PeerAuthentication", "v1-plain", {"selector": {"matchLabels": {"version": "v1"}}, "mtls": {"mode": "DISABLE"}}
    ),
]
STATE = ConfigState.build(len(DOCS), [StoredResource(parse_resource(d), i + 1, i + 1) for i, d in enumerate(DOCS)])


def explain_security(method: str = "GET", path: str = "/", **headers: str) -> dict[str, Any]:
    catalog = reviews_catalog()
    translation = translate(profile("reviews"), STATE.rules, catalog)
    out = explain_request(translation, catalog, host="reviews", method=method, path=path, query="", headers=headers)
    clusters = [d["cluster"] for d in out["destinations"]]
    return security_view(
        STATE,
        translation,
        catalog,
        clusters,
        source=PRODUCTPAGE,
        method=method,
        path=path,
        host="reviews",
        headers=headers,
    )


def by_version(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {w["labels"]["version"]: w for w in view["workloads"]}


def test_allowed_by_the_selecting_policy_over_strict_mtls() -> None:
    view = explain_security(**{"end-user": "jason"})
    assert view["enforced"] is True
    assert view["source_identity"] == "spiffe://cluster.local/ns/default/sa/productpage"
    (v3,) = view["workloads"]
    assert v3["instances"] == ["reviews-v3 on node1 (10.0.0.3:9080)"]  # the unhealthy v3b is not a destination
    assert v3["mtls"] == {
        "mode": "STRICT",
        "policy": "default/default",
        "port_level": False,
        "reason": "namespace policy default/default",
    }
    assert v3["source_principal"] == "cluster.local/ns/default/sa/productpage"
    assert v3["policies"] == ["default/v3-get-from-productpage", "istio-system/no-admin"]
    assert v3["authorization"]["decision"] == "ALLOW"
    assert v3["authorization"]["policy"] == "default/v3-get-from-productpage"


def test_each_destination_workload_gets_its_own_decision() -> None:
    workloads = by_version(explain_security(method="POST"))
    assert set(workloads) == {"v1", "v3"}
    assert workloads["v1"]["mtls"]["mode"] == "DISABLE"
    assert workloads["v1"]["source_principal"] is None  # plaintext: no peer identity
    assert workloads["v1"]["authorization"]["decision"] == "ALLOW"  # no ALLOW policy selects v1
    assert workloads["v3"]["authorization"]["decision"] == "DENY"  # POST is not GET
    assert "no rule of the ALLOW policies" in workloads["v3"]["authorization"]["reason"]


def test_mesh_wide_deny_decides_first() -> None:
    workloads = by_version(explain_security(path="/admin/users"))
    for workload in workloads.values():
        assert workload["authorization"]["policy"] == "istio-system/no-admin"
        assert workload["authorization"]["decision"] == "DENY"


async def test_explain_api_shows_the_security_decision(api: Any, http: Any) -> None:
    await register(http, "ratings", "ratings-1", 9080)
    policy = doc(
        "AuthorizationPolicy",
        "ratings-deny-delete",
        {"action": "DENY", "rules": [{"to": [{"operation": {"methods": ["DELETE"]}}]}]},
    )
    async with api.put("/v1/mesh/config", json=policy) as response:
        assert response.status == 200, await response.text()
    params = {"source": "productpage", "host": "ratings", "method": "DELETE", "path": "/ratings/1"}
    async with api.get("/v1/mesh/explain", params=params) as response:
        result = await response.json()
        assert response.status == 200, result
    assert result["status"] == 200  # routed; the security part says the destination's sidecar denies it
    security = result["security"]
    assert security["enforced"] is True
    (workload,) = security["workloads"]
    assert workload["authorization"]["decision"] == "DENY"
    assert workload["authorization"]["policy"] == "default/ratings-deny-delete"
    assert workload["mtls"]["mode"] == "PERMISSIVE"
