"""Label selectors: Kubernetes' documented examples as tables, and laws checked with hypothesis."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh.model.selectors import (
    OPERATORS,
    Requirement,
    Selector,
    SelectorError,
    parse_selector,
    requirement,
    selector_from_object,
)

# === the examples of https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/ ===

PROD_FRONTEND = {"environment": "production", "tier": "frontend"}
QA_FRONTEND = {"environment": "qa", "tier": "frontend"}
DEV_BACKEND = {"environment": "dev", "tier": "backend", "partition": "customerA"}
NO_LABELS: dict[str, str] = {}


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ("environment = production", PROD_FRONTEND, True),
        ("environment = production", QA_FRONTEND, False),
        ("environment == production", PROD_FRONTEND, True),
        ("tier != frontend", PROD_FRONTEND, False),
        ("tier != frontend", DEV_BACKEND, True),
        ("tier != frontend", NO_LABELS, True),  # != also selects objects without the key
        ("environment=production,tier!=frontend", PROD_FRONTEND, False),
        ("environment=production,tier!=frontend", {"environment": "production", "tier": "backend"}, True),
        ("environment in (production, qa)", QA_FRONTEND, True),
        ("environment in (production, qa)", DEV_BACKEND, False),
        ("environment in (production, qa)", NO_LABELS, False),  # in needs the key
        ("tier notin (frontend, backend)", PROD_FRONTEND, False),
        ("tier notin (frontend, backend)", {"tier": "cache"}, True),
        ("tier notin (frontend, backend)", NO_LABELS, True),  # notin also selects objects without the key
        ("partition", DEV_BACKEND, True),
        ("partition", PROD_FRONTEND, False),
        ("!partition", PROD_FRONTEND, True),
        ("!partition", DEV_BACKEND, False),
        ("partition in (customerA, customerB),environment!=qa", DEV_BACKEND, True),
        ("partition in (customerA, customerB),environment!=qa", {"partition": "customerB", "environment": "qa"}, False),
        ("!partition,environment notin (qa)", PROD_FRONTEND, True),
        ("!partition,environment notin (qa)", QA_FRONTEND, False),
        ("", NO_LABELS, True),  # the empty selector selects everything
        ("app=web,tier!=db,env in (prod,staging),release notin (canary),team,!legacy", {}, False),
        (
            "app=web,tier!=db,env in (prod,staging),release notin (canary),team,!legacy",
            {"app": "web", "env": "staging", "team": "a", "tier": "api"},
            True,
        ),
        (
            "app=web,tier!=db,env in (prod,staging),release notin (canary),team,!legacy",
            {"app": "web", "env": "staging", "team": "a", "legacy": "yes"},
            False,
        ),
        ("app.kubernetes.io/name=reviews", {"app.kubernetes.io/name": "reviews"}, True),
        ("version=", {"version": ""}, True),  # the empty value is a value
        ("version=", NO_LABELS, False),
    ],
)
def test_documented_string_examples(text: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_selector(text).matches(labels) is expected


def test_documented_object_example() -> None:
    # The Job/Deployment example: matchLabels and matchExpressions are ANDed.
    selector = selector_from_object(
        {
            "matchLabels": {"component": "redis"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["cache"]},
                {"key": "environment", "operator": "NotIn", "values": ["dev"]},
            ],
        }
    )
    assert selector.matches({"component": "redis", "tier": "cache", "environment": "prod"})
    assert selector.matches({"component": "redis", "tier": "cache"})
    assert not selector.matches({"component": "redis", "tier": "cache", "environment": "dev"})
    assert not selector.matches({"component": "redis", "tier": "db"})
    assert selector == parse_selector("component=redis,tier in (cache),environment notin (dev)")
    assert str(selector) == "component=redis,environment!=dev,tier=cache"


def test_exists_and_does_not_exist_objects() -> None:
    selector = selector_from_object(
        {"matchExpressions": [{"key": "team", "operator": "Exists"}, {"key": "legacy", "operator": "DoesNotExist"}]}
    )
    assert selector == parse_selector("team,!legacy")
    assert selector.matches({"team": "x"})
    assert not selector.matches({"team": "x", "legacy": ""})
    assert selector_from_object({}).empty
    assert selector_from_object(None).matches({"a": "b"})


def test_canonical_string_form() -> None:
    selector = parse_selector("tier!=db, app==web ,env in (staging,prod,prod),team,!legacy,release notin (canary)")
    assert str(selector) == "app=web,env in (prod,staging),!legacy,release!=canary,team,tier!=db"
    assert selector.to_object() == {
        "matchLabels": {"app": "web"},
        "matchExpressions": [
            {"key": "env", "operator": "In", "values": ["prod", "staging"]},
            {"key": "legacy", "operator": "DoesNotExist"},
            {"key": "release", "operator": "NotIn", "values": ["canary"]},
            {"key": "team", "operator": "Exists"},
            {"key": "tier", "operator": "NotIn", "values": ["db"]},
        ],
    }


def test_empty_values_in_a_set_as_kubernetes_reads_them() -> None:
    assert parse_selector("a in (x,,y)").requirements == (Requirement("a", "In", ("", "x", "y")),)
    assert parse_selector("a in (x,)").requirements == (Requirement("a", "In", ("", "x")),)


# === errors name where ===


@pytest.mark.parametrize(
    ("text", "position", "fragment"),
    [
        ("app in ()", 7, "must not be empty"),
        ("app=web,", 8, "expected a label key, found the end"),
        ("a=b=c", 3, "expected ',' or the end"),
        ("env in (prod", 12, "found the end"),
        ("env in prod", 7, "expected '(' to open the value set"),
        ("app web", 4, "expected an operator"),
        ("-app=web", 0, "label key '-app'"),
        ("app=web,Bad_Prefix/x=1", 8, "prefix must be a lower-case DNS subdomain"),
        ("app=-web", 4, "label value '-web'"),
        ("app=" + "v" * 64, 4, "at most 63 characters"),
        ("env in (prod,-x)", 13, "label value '-x'"),
        ("!", 1, "expected a label key"),
        (",a", 0, "expected a label key"),
    ],
)
def test_string_errors_name_the_position(text: str, position: int, fragment: str) -> None:
    with pytest.raises(SelectorError) as caught:
        parse_selector(text)
    assert caught.value.position == position, str(caught.value)
    assert fragment in str(caught.value)
    assert str(caught.value).endswith(f"at position {position}")


@pytest.mark.parametrize(
    ("data", "path", "fragment"),
    [
        ([], "selector", "expected an object"),
        ({"matchLabel": {}}, "selector", "unknown field 'matchLabel'"),
        ({"matchLabels": ["a"]}, "selector.matchLabels", "expected an object"),
        ({"matchLabels": {"app": 1}}, "selector.matchLabels.app", "must be strings"),
        ({"matchLabels": {"app": "-x"}}, "selector.matchLabels.app", "label value '-x'"),
        ({"matchExpressions": {}}, "selector.matchExpressions", "expected a list"),
        ({"matchExpressions": ["a"]}, "selector.matchExpressions[0]", "expected an object"),
        ({"matchExpressions": [{"key": "a", "operator": "In", "vals": []}]}, "selector.matchExpressions[0]", "'vals'"),
        ({"matchExpressions": [{"operator": "Exists"}]}, "selector.matchExpressions[0].key", "non-empty string"),
        ({"matchExpressions": [{"key": "a/b/c", "operator": "Exists"}]}, "selector.matchExpressions[0].key", "prefix"),
        ({"matchExpressions": [{"key": "a", "operator": "in"}]}, "selector.matchExpressions[0].operator", "'in'"),
        ({"matchExpressions": [{"key": "a", "operator": "In"}]}, "selector.matchExpressions[0].values", "at least one"),
        (
            {
                "matchExpressions": [
                    {"key": "a", "operator": "Exists"},
                    {"key": "b", "operator": "Exists", "values": ["x"]},
                ]
            },
            "selector.matchExpressions[1].values",
            "takes no values",
        ),
        (
            {"matchExpressions": [{"key": "a", "operator": "NotIn", "values": "x"}]},
            "selector.matchExpressions[0].values",
            "list",
        ),
    ],
)
def test_object_errors_name_the_field(data: Any, path: str, fragment: str) -> None:
    with pytest.raises(SelectorError) as caught:
        selector_from_object(data)
    assert caught.value.path == path, str(caught.value)
    assert fragment in str(caught.value)


# === laws ===

_NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
names = st.builds(
    lambda first, middle, last: first + middle + last if middle or last else first,
    st.sampled_from("abcxyzAB09"),
    st.text(alphabet=_NAME_CHARS + "-_.", max_size=6),
    st.sampled_from(_NAME_CHARS),
).filter(lambda n: len(n) <= 63)
keys = st.one_of(
    names, st.builds(lambda p, n: f"{p}/{n}", st.sampled_from(["example.com", "app.kubernetes.io"]), names)
)
values = st.one_of(st.just(""), names)
operators = st.sampled_from(OPERATORS)


@st.composite
def requirements(draw: st.DrawFn) -> Requirement:
    operator = draw(operators)
    chosen = draw(st.lists(values, min_size=1, max_size=4)) if operator in ("In", "NotIn") else []
    return requirement(draw(keys), operator, chosen)


selectors = st.lists(requirements(), max_size=5).map(Selector.of)
label_sets = st.dictionaries(keys, values, max_size=6)


@given(selectors)
def test_string_form_round_trips(selector: Selector) -> None:
    assert parse_selector(str(selector)) == selector


@given(selectors)
def test_object_form_round_trips(selector: Selector) -> None:
    assert selector_from_object(selector.to_object()) == selector


@given(requirements(), label_sets)
def test_negation_matches_exactly_the_complement(term: Requirement, labels: dict[str, str]) -> None:
    assert term.negated().matches(labels) is not term.matches(labels)
    assert term.negated().negated() == term


@given(selectors, selectors, label_sets)
def test_requirements_are_anded(left: Selector, right: Selector, labels: dict[str, str]) -> None:
    both = Selector.of(left.requirements + right.requirements)
    assert both.matches(labels) is (left.matches(labels) and right.matches(labels))


@given(requirements(), label_sets)
def test_a_requirement_matches_the_labels_it_names(term: Requirement, labels: dict[str, str]) -> None:
    # Setting the key to one of an In's values makes it match; removing the key decides Exists/NotIn alone.
    without = {k: v for k, v in labels.items() if k != term.key}
    assert term.matches(without) is (term.operator in ("NotIn", "DoesNotExist"))
    if term.operator == "In":
        assert term.matches({**labels, term.key: term.values[0]})


@given(selectors, label_sets)
def test_whitespace_does_not_change_a_selector(selector: Selector, labels: dict[str, str]) -> None:
    spaced = str(selector).replace(",", " , ").replace("(", "( ").replace(")", " )").replace("!=", " != ")
    assert parse_selector(spaced).matches(labels) is selector.matches(labels)
