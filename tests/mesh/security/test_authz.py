"""AuthorizationPolicy decisions and PeerAuthentication modes, table-driven, with Istio's corner cases."""

from __future__ import annotations

from typing import Any

import pytest

from mesh.rules.resource import parse_resource
from mesh.rules.security import AuthorizationPolicySpec, PeerAuthenticationSpec
from mesh.security.authz import (
    NamedPeerAuthentication,
    NamedPolicy,
    RequestAttributes,
    evaluate,
    policies_for_workload,
    resolve_mtls_mode,
    string_matches,
)

SLEEP = "cluster.local/ns/default/sa/sleep"
ADMIN = "cluster.local/ns/ops/sa/admin"


def policy(name: str, spec: dict[str, Any], namespace: str = "default") -> NamedPolicy:
    resource = parse_resource(
        {
            "apiVersion": "security.istio.io/v1",
            "kind": "AuthorizationPolicy",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }
    )
    assert isinstance(resource.spec, AuthorizationPolicySpec)
    return NamedPolicy(namespace, name, resource.spec)


def request(**overrides: Any) -> RequestAttributes:
    base: dict[str, Any] = {
        "source_principal": "spiffe://" + SLEEP,
        "source_ip": "10.0.0.5",
        "destination_port": 9080,
        "method": "GET",
        "path": "/api/v1/items",
        "host": "reviews.default.svc.cluster.local:9080",
        "headers": {"x-token": "abc123", "user-agent": "curl/8.0"},
    }
    base.update(overrides)
    return RequestAttributes(**base)


ALLOW_GET_FROM_SLEEP = {
    "action": "ALLOW",
    "rules": [{"from": [{"source": {"principals": [SLEEP]}}], "to": [{"operation": {"methods": ["GET"]}}]}],
}

# (case, policies, request overrides, allowed, deciding policy, rule)
MATRIX: list[tuple[str, list[tuple[str, dict[str, Any]]], dict[str, Any], bool, str | None, int | None]] = [
    ("no policies: allowed by default", [], {}, True, None, None),
    ("allow-nothing: ALLOW without rules denies all", [("nothing", {})], {}, False, None, None),
    ("allow-nothing with explicit empty rules", [("nothing", {"action": "ALLOW", "rules": []})], {}, False, None, None),
    ("rules: [{}] matches everything", [("all", {"rules": [{}]})], {"source_principal": ""}, True, "default/all", 0),
    (
        "DENY with rules: [{}] denies all",
        [("deny-all", {"action": "DENY", "rules": [{}]})],
        {},
        False,
        "default/deny-all",
        0,
    ),
    ("DENY without rules denies nothing", [("deny-none", {"action": "DENY"})], {}, True, None, None),
    ("ALLOW matches principal and method", [("get", ALLOW_GET_FROM_SLEEP)], {}, True, "default/get", 0),
    ("fields are ANDed: method differs", [("get", ALLOW_GET_FROM_SLEEP)], {"method": "POST"}, False, None, None),
    (
        "fields are ANDed: principal differs",
        [("get", ALLOW_GET_FROM_SLEEP)],
        {"source_principal": ADMIN},
        False,
        None,
        None,
    ),
    (
        "values are ORed",
        [("m", {"rules": [{"to": [{"operation": {"methods": ["POST", "GET"]}}]}]})],
        {},
        True,
        "default/m",
        0,
    ),
    (
        "from entries are ORed",
        [("f", {"rules": [{"from": [{"source": {"principals": [ADMIN]}}, {"source": {"namespaces": ["default"]}}]}]})],
        {},
        True,
        "default/f",
        0,
    ),
    (
        "rules are ORed: the second rule decides",
        [
            (
                "r",
                {
                    "rules": [
                        {"to": [{"operation": {"paths": ["/admin"]}}]},
                        {"to": [{"operation": {"ports": ["9080"]}}]},
                    ]
                },
            )
        ],
        {},
        True,
        "default/r",
        1,
    ),
    (
        "DENY beats ALLOW",
        [
            ("get", ALLOW_GET_FROM_SLEEP),
            ("no-api", {"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/api/*"]}}]}]}),
        ],
        {},
        False,
        "default/no-api",
        0,
    ),
    (
        "DENY that does not match leaves ALLOW to decide",
        [
            ("get", ALLOW_GET_FROM_SLEEP),
            ("no-admin", {"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/admin*"]}}]}]}),
        ],
        {},
        True,
        "default/get",
        0,
    ),
    (
        "principals '*' needs an authenticated peer",
        [("any-peer", {"rules": [{"from": [{"source": {"principals": ["*"]}}]}]})],
        {"source_principal": ""},
        False,
        None,
        None,
    ),
    (
        "principals '*' matches any authenticated peer",
        [("any-peer", {"rules": [{"from": [{"source": {"principals": ["*"]}}]}]})],
        {},
        True,
        "default/any-peer",
        0,
    ),
    (
        "notPrincipals '*' denies plaintext (Istio's require-mTLS idiom)",
        [("mtls-only", {"action": "DENY", "rules": [{"from": [{"source": {"notPrincipals": ["*"]}}]}]})],
        {"source_principal": ""},
        False,
        "default/mtls-only",
        0,
    ),
    (
        "notPrincipals '*' lets mTLS through",
        [("mtls-only", {"action": "DENY", "rules": [{"from": [{"source": {"notPrincipals": ["*"]}}]}]})],
        {},
        True,
        None,
        None,
    ),
    (
        "namespaces come from the peer identity",
        [("ops", {"rules": [{"from": [{"source": {"namespaces": ["ops"]}}]}]})],
        {"source_principal": ADMIN},
        True,
        "default/ops",
        0,
    ),
    (
        "notNamespaces excludes",
        [("not-default", {"rules": [{"from": [{"source": {"notNamespaces": ["default"]}}]}]})],
        {},
        False,
        None,
        None,
    ),
    (
        "principal suffix match",
        [("sfx", {"rules": [{"from": [{"source": {"principals": ["*/sa/sleep"]}}]}]})],
        {},
        True,
        "default/sfx",
        0,
    ),
    (
        "principal prefix match",
        [("pfx", {"rules": [{"from": [{"source": {"principals": ["cluster.local/ns/default/*"]}}]}]})],
        {},
        True,
        "default/pfx",
        0,
    ),
    (
        "path prefix",
        [("p", {"rules": [{"to": [{"operation": {"paths": ["/api/*"]}}]}]})],
        {},
        True,
        "default/p",
        0,
    ),
    (
        "path exact does not match a longer path",
        [("p", {"rules": [{"to": [{"operation": {"paths": ["/api"]}}]}]})],
        {},
        False,
        None,
        None,
    ),
    (
        "path suffix",
        [("p", {"rules": [{"to": [{"operation": {"paths": ["*/items"]}}]}]})],
        {},
        True,
        "default/p",
        0,
    ),
    (
        "notPaths",
        [("p", {"rules": [{"to": [{"operation": {"notPaths": ["/api/*"]}}]}]})],
        {},
        False,
        None,
        None,
    ),
    (
        "paths and notPaths together",
        [("p", {"rules": [{"to": [{"operation": {"paths": ["/api/*"], "notPaths": ["/api/v1/secret"]}}]}]})],
        {},
        True,
        "default/p",
        0,
    ),
    (
        "host matches without the port, case-insensitively",
        [("h", {"rules": [{"to": [{"operation": {"hosts": ["Reviews.default.svc.cluster.local"]}}]}]})],
        {},
        True,
        "default/h",
        0,
    ),
    (
        "host suffix wildcard",
        [("h", {"rules": [{"to": [{"operation": {"hosts": ["*.svc.cluster.local"]}}]}]})],
        {},
        True,
        "default/h",
        0,
    ),
    (
        "host with a port in the policy needs that port",
        [("h", {"rules": [{"to": [{"operation": {"hosts": ["reviews.default.svc.cluster.local:80"]}}]}]})],
        {},
        False,
        None,
        None,
    ),
    (
        "ports",
        [("port", {"rules": [{"to": [{"operation": {"ports": ["8080"]}}]}]})],
        {},
        False,
        None,
        None,
    ),
    (
        "notPorts",
        [("port", {"rules": [{"to": [{"operation": {"notPorts": ["8080"]}}]}]})],
        {},
        True,
        "default/port",
        0,
    ),
    (
        "ipBlocks",
        [("ip", {"rules": [{"from": [{"source": {"ipBlocks": ["10.0.0.0/24"]}}]}]})],
        {},
        True,
        "default/ip",
        0,
    ),
    (
        "notIpBlocks",
        [("ip", {"rules": [{"from": [{"source": {"notIpBlocks": ["10.0.0.5"]}}]}]})],
        {},
        False,
        None,
        None,
    ),
    (
        "remoteIpBlocks read the original client",
        [("ip", {"rules": [{"from": [{"source": {"remoteIpBlocks": ["192.168.0.0/16"]}}]}]})],
        {"remote_ip": "192.168.1.1"},
        True,
        "default/ip",
        0,
    ),
    (
        "when: header value",
        [("hdr", {"rules": [{"when": [{"key": "request.headers[X-Token]", "values": ["abc*"]}]}]})],
        {},
        True,
        "default/hdr",
        0,
    ),
    (
        "when: absent header never matches values",
        [("hdr", {"rules": [{"when": [{"key": "request.headers[x-missing]", "values": ["*"]}]}]})],
        {},
        False,
        None,
        None,
    ),
    (
        "when: absent header satisfies notValues",
        [("hdr", {"rules": [{"when": [{"key": "request.headers[x-missing]", "notValues": ["*"]}]}]})],
        {},
        True,
        "default/hdr",
        0,
    ),
    (
        "when: all conditions must hold",
        [
            (
                "w",
                {
                    "rules": [
                        {
                            "when": [
                                {"key": "request.headers[x-token]", "values": ["abc123"]},
                                {"key": "source.ip", "values": ["10.1.0.0/16"]},
                            ]
                        }
                    ]
                },
            )
        ],
        {},
        False,
        None,
        None,
    ),
    (
        "when: source.namespace and destination.port",
        [
            (
                "w",
                {
                    "rules": [
                        {
                            "when": [
                                {"key": "source.namespace", "values": ["default"]},
                                {"key": "destination.port", "values": ["9080"]},
                            ]
                        }
                    ]
                },
            )
        ],
        {},
        True,
        "default/w",
        0,
    ),
    (
        "requestPrincipals never match without request authentication",
        [("jwt", {"rules": [{"from": [{"source": {"requestPrincipals": ["*"]}}]}]})],
        {},
        False,
        None,
        None,
    ),
    (
        "AUDIT policies do not decide",
        [("audit", {"action": "AUDIT", "rules": [{}]})],
        {},
        True,
        None,
        None,
    ),
    (
        "TCP: an ALLOW rule with HTTP-only fields never matches",
        [("get", {"rules": [{"to": [{"operation": {"methods": ["GET"], "ports": ["9080"]}}]}]})],
        {"protocol": "tcp", "method": "", "path": ""},
        False,
        None,
        None,
    ),
    (
        "TCP: an ALLOW rule of TCP fields matches",
        [("port", {"rules": [{"to": [{"operation": {"ports": ["9080"]}}]}]})],
        {"protocol": "tcp", "method": "", "path": ""},
        True,
        "default/port",
        0,
    ),
    (
        "TCP: a DENY rule ignores its HTTP-only fields (denies more)",
        [
            (
                "deny-post",
                {"action": "DENY", "rules": [{"to": [{"operation": {"methods": ["POST"], "ports": ["9080"]}}]}]},
            )
        ],
        {"protocol": "tcp", "method": "", "path": ""},
        False,
        "default/deny-post",
        0,
    ),
]


@pytest.mark.parametrize(
    ("policies", "overrides", "allowed", "decider", "rule"),
    [pytest.param(p, o, a, d, r, id=case) for case, p, o, a, d, r in MATRIX],
)
def test_authorization_matrix(
    policies: list[tuple[str, dict[str, Any]]],
    overrides: dict[str, Any],
    allowed: bool,
    decider: str | None,
    rule: int | None,
) -> None:
    decision = evaluate(request(**overrides), [policy(name, spec) for name, spec in policies])
    assert (decision.allowed, decision.policy, decision.rule) == (allowed, decider, rule), decision.reason
    assert decision.to_json()["decision"] == ("ALLOW" if allowed else "DENY")


def test_decision_explains_itself() -> None:
    denied = evaluate(request(method="DELETE"), [policy("get", ALLOW_GET_FROM_SLEEP)])
    assert denied.reason == "no rule of the ALLOW policies selecting the workload matched (default/get)"
    allowed = evaluate(request(), [policy("get", ALLOW_GET_FROM_SLEEP)])
    assert allowed.to_json() == {
        "decision": "ALLOW",
        "policy": "default/get",
        "action": "ALLOW",
        "rule": 0,
        "reason": "allowed by ALLOW policy default/get, rule 0",
    }


def test_selection_by_namespace_root_and_labels() -> None:
    policies = [
        policy("ns-wide", {}, "shop"),
        policy("reviews-only", {"selector": {"matchLabels": {"app": "reviews"}}}, "shop"),
        policy("mesh-wide", {}, "istio-system"),
        policy("root-selector", {"selector": {"matchLabels": {"app": "reviews"}}}, "istio-system"),
        policy("elsewhere", {}, "other"),
    ]
    reviews = policies_for_workload(policies, "shop", [("app", "reviews"), ("version", "v1")])
    assert [p.name for p in reviews] == ["ns-wide", "reviews-only", "mesh-wide", "root-selector"]
    ratings = policies_for_workload(policies, "shop", [("app", "ratings")])
    assert [p.name for p in ratings] == ["ns-wide", "mesh-wide"]
    custom_root = policies_for_workload(policies, "shop", [("app", "ratings")], root_namespace="mesh-root")
    assert [p.name for p in custom_root] == ["ns-wide"]


@pytest.mark.parametrize(
    ("pattern", "value", "required", "matches"),
    [
        ("*", "", False, True),
        ("*", "", True, False),
        ("*", "x", True, True),
        ("abc*", "abcdef", False, True),
        ("abc*", "xabc", False, False),
        ("*def", "abcdef", False, True),
        ("abc", "abc", False, True),
        ("abc", "abcd", False, False),
        ("a*c", "a*c", False, True),  # only a leading or trailing "*" is a wildcard: this one is literal
        ("a*c", "abc", False, False),
    ],
)
def test_string_matching(pattern: str, value: str, required: bool, matches: bool) -> None:
    assert string_matches(pattern, value, required=required) is matches


# === PeerAuthentication ===


def peer(name: str, namespace: str, spec: dict[str, Any]) -> NamedPeerAuthentication:
    resource = parse_resource(
        {
            "apiVersion": "security.istio.io/v1beta1",
            "kind": "PeerAuthentication",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }
    )
    assert isinstance(resource.spec, PeerAuthenticationSpec)
    return NamedPeerAuthentication(namespace, name, resource.spec)


MESH_STRICT = peer("default", "istio-system", {"mtls": {"mode": "STRICT"}})
NS_PERMISSIVE = peer("default", "shop", {"mtls": {"mode": "PERMISSIVE"}})
NS_UNSET = peer("unset", "shop", {})
WORKLOAD = peer(
    "reviews",
    "shop",
    {
        "selector": {"matchLabels": {"app": "reviews"}},
        "mtls": {"mode": "DISABLE"},
        "portLevelMtls": {"8080": {"mode": "STRICT"}, "9090": {"mode": "UNSET"}},
    },
)
WORKLOAD_UNSET = peer("ratings", "shop", {"selector": {"matchLabels": {"app": "ratings"}}, "mtls": {"mode": "UNSET"}})
REVIEWS = [("app", "reviews")]


@pytest.mark.parametrize(
    ("policies", "namespace", "labels", "port", "mode", "decider", "port_level"),
    [
        pytest.param([], "shop", REVIEWS, None, "PERMISSIVE", None, False, id="nothing: Istio's default"),
        pytest.param([MESH_STRICT], "shop", REVIEWS, None, "STRICT", "istio-system/default", False, id="mesh-wide"),
        pytest.param(
            [MESH_STRICT, NS_PERMISSIVE], "shop", REVIEWS, None, "PERMISSIVE", "shop/default", False, id="ns over mesh"
        ),
        pytest.param(
            [MESH_STRICT, NS_UNSET], "shop", REVIEWS, None, "STRICT", "istio-system/default", False, id="UNSET inherits"
        ),
        pytest.param(
            [MESH_STRICT, NS_PERMISSIVE, WORKLOAD],
            "shop",
            REVIEWS,
            None,
            "DISABLE",
            "shop/reviews",
            False,
            id="workload over namespace",
        ),
        pytest.param(
            [MESH_STRICT, WORKLOAD], "shop", REVIEWS, 8080, "STRICT", "shop/reviews", True, id="port-level override"
        ),
        pytest.param(
            [MESH_STRICT, WORKLOAD], "shop", REVIEWS, 9090, "DISABLE", "shop/reviews", False, id="port-level UNSET"
        ),
        pytest.param([MESH_STRICT, WORKLOAD], "shop", REVIEWS, 7000, "DISABLE", "shop/reviews", False, id="other port"),
        pytest.param(
            [MESH_STRICT, NS_PERMISSIVE, WORKLOAD_UNSET],
            "shop",
            [("app", "ratings")],
            None,
            "PERMISSIVE",
            "shop/default",
            False,
            id="workload UNSET inherits namespace",
        ),
        pytest.param(
            [MESH_STRICT, WORKLOAD],
            "shop",
            [("app", "details")],
            8080,
            "STRICT",
            "istio-system/default",
            False,
            id="selector does not match",
        ),
        pytest.param(
            [NS_PERMISSIVE, WORKLOAD], "other", REVIEWS, 8080, "PERMISSIVE", None, False, id="other namespace"
        ),
    ],
)
def test_mtls_mode_resolution(
    policies: list[NamedPeerAuthentication],
    namespace: str,
    labels: list[tuple[str, str]],
    port: int | None,
    mode: str,
    decider: str | None,
    port_level: bool,
) -> None:
    decision = resolve_mtls_mode(policies, namespace, labels, port)
    assert (decision.mode, decision.policy, decision.port_level) == (mode, decider, port_level), decision.reason


def test_oldest_policy_wins_within_a_level() -> None:
    older = peer("a-old", "shop", {"mtls": {"mode": "STRICT"}})
    newer = peer("b-new", "shop", {"mtls": {"mode": "DISABLE"}})
    assert resolve_mtls_mode([older, newer], "shop", REVIEWS).policy == "shop/a-old"
    assert resolve_mtls_mode([newer, older], "shop", REVIEWS).policy == "shop/b-new"


# === end-user identity (RequestAuthentication) ===

CLAIMS = {
    "iss": "https://issuer.example.com",
    "sub": "alice",
    "aud": ["web", "api"],
    "azp": "frontend",
    "groups": ["dev", "ops"],
    "org": {"team": "payments"},
}
ALICE = "https://issuer.example.com/alice"


@pytest.mark.parametrize(
    ("spec", "principal", "claims", "allowed"),
    [
        ({"rules": [{"from": [{"source": {"requestPrincipals": ["*"]}}]}]}, ALICE, CLAIMS, True),
        ({"rules": [{"from": [{"source": {"requestPrincipals": ["*"]}}]}]}, "", {}, False),  # no token
        (
            {"rules": [{"from": [{"source": {"requestPrincipals": ["https://issuer.example.com/*"]}}]}]},
            ALICE,
            CLAIMS,
            True,
        ),
        ({"rules": [{"from": [{"source": {"notRequestPrincipals": [ALICE]}}]}]}, ALICE, CLAIMS, False),
        ({"rules": [{"when": [{"key": "request.auth.claims[groups]", "values": ["ops"]}]}]}, ALICE, CLAIMS, True),
        ({"rules": [{"when": [{"key": "request.auth.claims[groups]", "values": ["admin"]}]}]}, ALICE, CLAIMS, False),
        ({"rules": [{"when": [{"key": "request.auth.claims[groups]", "notValues": ["dev"]}]}]}, ALICE, CLAIMS, False),
        ({"rules": [{"when": [{"key": "request.auth.claims[org][team]", "values": ["pay*"]}]}]}, ALICE, CLAIMS, True),
        ({"rules": [{"when": [{"key": "request.auth.audiences", "values": ["api"]}]}]}, ALICE, CLAIMS, True),
        ({"rules": [{"when": [{"key": "request.auth.presenter", "values": ["frontend"]}]}]}, ALICE, CLAIMS, True),
        ({"rules": [{"when": [{"key": "request.auth.principal", "values": [ALICE]}]}]}, ALICE, CLAIMS, True),
        ({"rules": [{"when": [{"key": "request.auth.claims[groups]", "values": ["dev"]}]}]}, "", {}, False),
    ],
)
def test_request_principals_and_claims(
    spec: dict[str, Any], principal: str, claims: dict[str, Any], allowed: bool
) -> None:
    decision = evaluate(request(request_principal=principal, request_claims=claims), [policy("jwt", spec)])
    assert decision.allowed is allowed, decision.reason


def test_claim_rules_never_allow_tcp_and_deny_it_as_istio() -> None:
    allow = policy("allow", {"rules": [{"when": [{"key": "request.auth.claims[groups]", "values": ["dev"]}]}]})
    deny = policy(
        "deny", {"action": "DENY", "rules": [{"when": [{"key": "request.auth.claims[groups]", "values": ["x"]}]}]}
    )
    assert not evaluate(request(protocol="tcp"), [allow]).allowed
    assert not evaluate(request(protocol="tcp"), [deny]).allowed  # a DENY rule ignores HTTP-only conditions
