"""VirtualService rewriting for rollouts (mesh.control.rollout_routes): managed routes only."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh.control.rollout_decide import RouteAction
from mesh.control.rollout_routes import ANNOTATION, RouteError, find_stable, rewrite
from mesh.rules.resource import parse_resource


def virtual_service() -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "reviews", "namespace": "default", "resourceVersion": "7"},
        "spec": {
            "hosts": ["reviews"],
            "http": [
                {  # a test user pinned to v3: not the rollout's business
                    "match": [{"headers": {"end-user": {"exact": "jason"}}}],
                    "route": [{"destination": {"host": "reviews", "subset": "v3"}}],
                },
                {
                    "route": [
                        {
                            "destination": {
                                "host": "reviews.default.svc.cluster.local",
                                "subset": "v1",
                                "port": {"number": 9080},
                            }
                        }
                    ]
                },
            ],
        },
    }


def do(action: RouteAction) -> dict[str, Any]:
    return rewrite(
        virtual_service(), service="reviews", namespace="default", stable="v1", canary="v2", action=action, rollout="r1"
    )


def test_stable_is_the_subset_the_default_route_sends_to() -> None:
    # v3 is routed too, but only by the header route, which also sends only to reviews: ambiguous.
    with pytest.raises(RouteError, match="several subsets"):
        find_stable(virtual_service(), "reviews", "default", "v2")
    plain = virtual_service()
    del plain["spec"]["http"][0]
    assert find_stable(plain, "reviews", "default", "v2") == "v1"


def test_shift_splits_the_managed_route_and_keeps_the_others() -> None:
    out = do(RouteAction("shift", 25))
    header_route, managed = out["spec"]["http"]
    assert header_route == virtual_service()["spec"]["http"][0]
    assert managed["route"] == [
        {
            "destination": {"host": "reviews.default.svc.cluster.local", "subset": "v1", "port": {"number": 9080}},
            "weight": 75,
        },
        {
            "destination": {"host": "reviews.default.svc.cluster.local", "subset": "v2", "port": {"number": 9080}},
            "weight": 25,
        },
    ]
    assert out["metadata"]["annotations"] == {ANNOTATION: "r1"}
    assert "resourceVersion" not in out["metadata"]  # the apply is unconditional: it re-reads each time
    parse_resource(out)  # still a valid VirtualService


def test_promote_and_restore_leave_one_subset_and_drop_the_annotation() -> None:
    shifted = do(RouteAction("shift", 50))
    for action, subset in ((RouteAction("promote", 100), "v2"), (RouteAction("restore"), "v1")):
        out = rewrite(
            shifted, service="reviews", namespace="default", stable="v1", canary="v2", action=action, rollout="r1"
        )
        assert out["spec"]["http"][1]["route"] == [
            {"destination": {"host": "reviews.default.svc.cluster.local", "subset": subset, "port": {"number": 9080}}}
        ]
        assert "annotations" not in out["metadata"]
        parse_resource(out)


def test_a_virtual_service_without_a_managed_route_is_refused() -> None:
    with pytest.raises(RouteError, match="nothing to shift"):
        rewrite(
            virtual_service(),
            service="ratings",
            namespace="default",
            stable="v1",
            canary="v2",
            action=RouteAction("shift", 10),
            rollout="r1",
        )


@given(st.integers(1, 100))
def test_every_shift_is_a_valid_virtual_service_whose_weights_add_up(weight: int) -> None:
    out = do(RouteAction("shift", weight))
    parse_resource(out)
    managed = out["spec"]["http"][1]["route"]
    assert [d["weight"] for d in managed] == [100 - weight, weight]
