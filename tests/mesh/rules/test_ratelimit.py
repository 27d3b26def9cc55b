"""RateLimitPolicy: validated with errors naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from mesh.model.reader import ConfigError
from mesh.rules.ratelimit import LimitKey, LimitMatch, RateLimitPolicySpec, SharedQuota, TokenBucket
from tests.mesh.rules.helpers import doc, parse


def test_rate_limit_policy_parses() -> None:
    spec = parse(
        doc(
            "RateLimitPolicy",
            "productpage",
            {
                "selector": {"matchLabels": {"app": "productpage"}},
                "limits": [
                    {
                        "name": "per-user",
                        "match": {"paths": ["/api/*"], "methods": ["POST"]},
                        "key": {"header": "X-User-Id"},
                        "tokenBucket": {"maxTokens": 10, "fillInterval": "1s"},
                    },
                    {
                        "name": "by-ip",
                        "key": {"sourceIp": {}},
                        "tokenBucket": {"maxTokens": 5, "tokensPerFill": 1, "fillInterval": "200ms"},
                    },
                    {"name": "everyone", "shared": {"requestsPerUnit": 1000, "unit": "MINUTE", "failureMode": "DENY"}},
                ],
            },
        )
    ).spec
    assert isinstance(spec, RateLimitPolicySpec)
    per_user, by_ip, everyone = spec.limits
    assert per_user.match == LimitMatch(("/api/*",), ("POST",))
    assert per_user.key == LimitKey("header", "x-user-id")
    assert per_user.token_bucket == TokenBucket(10, 10, 1.0)
    assert by_ip.key == LimitKey("source_ip")
    assert everyone.key == LimitKey()
    assert everyone.shared == SharedQuota(1000, "MINUTE", "DENY")
    assert everyone.shared.window_s == 60.0


def limits(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"limits": list(entries)}


BUCKET = {"maxTokens": 1, "fillInterval": "1s"}


@pytest.mark.parametrize(
    ("spec", "error_path", "text"),
    [
        ({}, "spec.limits", "required"),
        (limits(), "spec.limits", "at least one"),
        (limits({"tokenBucket": BUCKET}), "spec.limits[0].name", "required"),
        (limits({"name": "Bad Name", "tokenBucket": BUCKET}), "spec.limits[0].name", "invalid limit name"),
        (limits({"name": "a"}), "spec.limits[0]", "exactly one of tokenBucket"),
        (
            limits({"name": "a", "tokenBucket": BUCKET, "shared": {"requestsPerUnit": 1, "unit": "SECOND"}}),
            "spec.limits[0]",
            "exactly one",
        ),
        (
            limits({"name": "a", "tokenBucket": {"maxTokens": 0, "fillInterval": "1s"}}),
            "spec.limits[0].tokenBucket.maxTokens",
            "1..",
        ),
        (limits({"name": "a", "tokenBucket": {"maxTokens": 1}}), "spec.limits[0].tokenBucket.fillInterval", "required"),
        (
            limits({"name": "a", "tokenBucket": {"maxTokens": 1, "fillInterval": "10ms"}}),
            "spec.limits[0].tokenBucket.fillInterval",
            "50ms",
        ),
        (
            limits({"name": "a", "tokenBucket": {"maxTokens": 1, "fillInterval": "soon"}}),
            "spec.limits[0].tokenBucket.fillInterval",
            "duration",
        ),
        (
            limits({"name": "a", "shared": {"requestsPerUnit": 5, "unit": "WEEK"}}),
            "spec.limits[0].shared.unit",
            "one of",
        ),
        (
            limits({"name": "a", "shared": {"requestsPerUnit": 5, "unit": "SECOND", "failureMode": "open"}}),
            "spec.limits[0].shared.failureMode",
            "ALLOW, DENY",
        ),
        (limits({"name": "a", "key": {}, "tokenBucket": BUCKET}), "spec.limits[0].key", "needs header"),
        (
            limits({"name": "a", "key": {"header": "x", "sourceIp": {}}, "tokenBucket": BUCKET}),
            "spec.limits[0].key",
            "one of",
        ),
        (limits({"name": "a", "key": {"cookie": "x"}, "tokenBucket": BUCKET}), "spec.limits[0].key.cookie", "unknown"),
        (
            limits({"name": "a", "tokenBucket": BUCKET}, {"name": "a", "tokenBucket": BUCKET}),
            "spec.limits[1].name",
            "already names",
        ),
    ],
)
def test_invalid_rate_limit_policies_name_the_field(spec: dict[str, Any], error_path: str, text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(doc("RateLimitPolicy", "p", spec))
    assert info.value.path == error_path, info.value
    assert text in info.value.message, info.value
