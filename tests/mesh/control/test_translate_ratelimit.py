"""The rate limits the control plane puts into a sidecar's snapshot: the policies selecting its workload."""

from __future__ import annotations

from dataclasses import replace

from mesh.control.translate import translate
from mesh.model.dump import snapshot_to_dict
from mesh.model.parse import parse_snapshot
from tests.mesh.control.helpers import profile, rules
from tests.mesh.rules.helpers import doc

BUCKET = {"limits": [{"name": "all", "tokenBucket": {"maxTokens": 5, "fillInterval": "1s"}}]}


def test_selected_policies_travel_and_round_trip() -> None:
    selected = doc(
        "RateLimitPolicy", "productpage", {**BUCKET, "selector": {"matchLabels": {"app": "productpage"}}}, "default"
    )
    root = doc("RateLimitPolicy", "mesh-wide", BUCKET, "istio-system")
    other_app = doc(
        "RateLimitPolicy", "reviews", {**BUCKET, "selector": {"matchLabels": {"app": "reviews"}}}, "default"
    )
    other_ns = doc("RateLimitPolicy", "shop", BUCKET, "shop")
    snapshot = translate(profile(), rules(selected, root, other_app, other_ns), {}).snapshot
    assert [entry.id for entry in snapshot.rate_limits] == ["default/productpage", "istio-system/mesh-wide"]
    versioned = replace(snapshot, version="1")
    dumped = snapshot_to_dict(versioned)
    assert dumped["rate_limits"][0]["spec"]["limits"][0]["tokenBucket"] == {"maxTokens": 5, "fillInterval": "1s"}
    assert parse_snapshot(dumped) == versioned


def test_no_policy_no_section() -> None:
    snapshot = replace(translate(profile(), rules(), {}).snapshot, version="1")
    assert snapshot.rate_limits == ()
    assert "rate_limits" not in snapshot_to_dict(snapshot)
