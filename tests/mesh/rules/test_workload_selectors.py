"""Kubernetes label selectors in rules: a DestinationRule's workloadSelector takes matchLabels and
matchExpressions (In, NotIn, Exists, DoesNotExist, ANDed) through the shared mesh.model.selectors."""

from __future__ import annotations

from typing import Any

import pytest

from mesh.model.reader import ConfigError
from mesh.model.selectors import parse_selector
from mesh.rules.destination_rule import DestinationRuleSpec
from mesh.rules.hosts import resolve_host
from mesh.rules.ruleset import RuleSet
from tests.mesh.rules.helpers import dr, parse

TARGET = resolve_host("reviews", "default")


def rule(name: str, selector: dict[str, Any] | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"host": "reviews.default.svc.cluster.local"}
    if selector is not None:
        spec["workloadSelector"] = selector
    return dr(name, "prod", **spec)


def test_match_expressions_parse_into_the_shared_selector() -> None:
    resource = parse(
        rule(
            "canary-clients",
            {
                "matchLabels": {"app": "productpage"},
                "matchExpressions": [
                    {"key": "track", "operator": "NotIn", "values": ["canary"]},
                    {"key": "team", "operator": "Exists"},
                    {"key": "legacy", "operator": "DoesNotExist"},
                ],
            },
        )
    )
    assert isinstance(resource.spec, DestinationRuleSpec)
    assert resource.spec.workload_selector == parse_selector("app=productpage,track!=canary,team,!legacy")


@pytest.mark.parametrize(
    ("labels", "chosen"),
    [
        ({"app": "productpage", "team": "a"}, "selected"),  # track absent: NotIn matches, as in Kubernetes
        ({"app": "productpage", "team": "a", "track": "stable"}, "selected"),
        ({"app": "productpage", "team": "a", "track": "canary"}, "plain"),  # NotIn excludes it
        ({"app": "productpage"}, "plain"),  # no team: Exists fails
        ({"app": "productpage", "team": "a", "legacy": ""}, "plain"),  # DoesNotExist fails
        ({"app": "ratings", "team": "a"}, "plain"),  # matchLabels fails
    ],
)
def test_the_selected_rule_applies_only_to_matching_workloads(labels: dict[str, str], chosen: str) -> None:
    selected = parse(
        rule(
            "selected",
            {
                "matchLabels": {"app": "productpage"},
                "matchExpressions": [
                    {"key": "track", "operator": "NotIn", "values": ["canary"]},
                    {"key": "team", "operator": "Exists"},
                    {"key": "legacy", "operator": "DoesNotExist"},
                ],
            },
        )
    )
    plain = parse(rule("plain", None))
    rules = RuleSet.build([selected, plain])
    found = rules.destination_rule_for(TARGET, "prod", tuple(sorted(labels.items())))
    assert found is not None
    assert found.resource.key.name == chosen


def test_in_selects_any_of_its_values_and_only_in_the_rules_namespace() -> None:
    selected = parse(
        rule("selected", {"matchExpressions": [{"key": "version", "operator": "In", "values": ["v1", "v2"]}]})
    )
    rules = RuleSet.build([selected])
    for version in ("v1", "v2"):
        assert rules.destination_rule_for(TARGET, "prod", (("version", version),)) is not None
    assert rules.destination_rule_for(TARGET, "prod", (("version", "v3"),)) is None
    assert rules.destination_rule_for(TARGET, "prod", ()) is None
    assert rules.destination_rule_for(TARGET, "other", (("version", "v1"),)) is None  # its namespace only


@pytest.mark.parametrize(
    ("selector", "path", "text"),
    [
        ({"matchLabels": {}}, "spec.workloadSelector.matchLabels", "at least one"),
        ({}, "spec.workloadSelector", "at least one"),
        (
            {"matchExpressions": [{"key": "a", "operator": "in", "values": ["x"]}]},
            "spec.workloadSelector.matchExpressions[0].operator",
            "expected one of In, NotIn, Exists, DoesNotExist",
        ),
        (
            {"matchExpressions": [{"key": "a", "operator": "In"}]},
            "spec.workloadSelector.matchExpressions[0].values",
            "needs at least one value",
        ),
        (
            {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]},
            "spec.workloadSelector.matchExpressions[0].values",
            "takes no values",
        ),
        ({"matchLabels": {"bad key": "x"}}, "spec.workloadSelector.matchLabels.bad key", "label key"),
        ({"labels": {"app": "x"}}, "spec.workloadSelector", "unknown field 'labels'"),
    ],
)
def test_selector_errors_name_the_field(selector: dict[str, Any], path: str, text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(rule("bad", selector))
    assert info.value.path == path, info.value
    assert text in info.value.message
