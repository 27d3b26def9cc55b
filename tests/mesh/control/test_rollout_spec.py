"""Rollout specs (mesh.control.rollout_spec): defaults, and errors naming the field."""

from __future__ import annotations

import pytest

from mesh.control.rollout_spec import parse_error_rate, parse_rollout_spec
from mesh.model.reader import ConfigError


def test_defaults_and_round_trip() -> None:
    spec = parse_rollout_spec({"service": "reviews", "canary": "v2"})
    assert (spec.name, spec.namespace, spec.virtual_service, spec.strategy) == (
        "reviews",
        "default",
        "reviews",
        "canary",
    )
    assert spec.steps == (10, 25, 50, 100)
    assert (spec.interval, spec.max_error_rate, spec.max_p99_ms, spec.min_requests) == (30.0, 0.01, None, 20)
    assert parse_rollout_spec(spec.to_json()) == spec


def test_durations_and_comma_separated_steps() -> None:
    spec = parse_rollout_spec(
        {"service": "reviews", "canary": "v2", "steps": "10,25,50,100", "interval": "1m30s", "max_p99": "200ms"}
    )
    assert (spec.steps, spec.interval, spec.max_p99_ms) == ((10, 25, 50, 100), 90.0, 200.0)


@pytest.mark.parametrize(
    ("body", "path", "words"),
    [
        ({"canary": "v2"}, "service", "required"),
        ({"service": "reviews"}, "canary", "required"),
        ({"service": "reviews", "canary": "v2", "stable": "v2"}, "stable", "differ"),
        ({"service": "reviews", "canary": "v2", "steps": [10, 50]}, "steps", "last step must be 100"),
        ({"service": "reviews", "canary": "v2", "steps": [50, 10, 100]}, "steps[1]", "larger than"),
        ({"service": "reviews", "canary": "v2", "steps": [0, 100]}, "steps[0]", "1-100"),
        ({"service": "reviews", "canary": "v2", "steps": "10,x,100"}, "steps[1]", "1-100"),
        ({"service": "reviews", "canary": "v2", "strategy": "bluegreen", "steps": [50, 100]}, "steps", "one step"),
        ({"service": "reviews", "canary": "v2", "strategy": "linear"}, "strategy", "canary, bluegreen"),
        ({"service": "reviews", "canary": "v2", "interval": "soon"}, "interval", "duration"),
        ({"service": "reviews", "canary": "v2", "interval": "10ms"}, "interval", "at least"),
        ({"service": "reviews", "canary": "v2", "max_error_rate": 5}, "max_error_rate", "fraction"),
        ({"service": "reviews", "canary": "v2", "max_p99": "-1s"}, "max_p99", "positive"),
        ({"service": "reviews", "canary": "v2", "max_p99": "1s", "max_p99_ms": 5}, "max_p99", "not both"),
        ({"service": "reviews", "canary": "v2", "min_requests": 0}, "min_requests", ">= 1"),
        ({"service": "reviews", "canary": "V2"}, "canary", "invalid subset name"),
        ({"service": "reviews", "canary": "v2", "colour": "blue"}, "colour", "unknown field"),
    ],
)
def test_errors_name_the_field(body: dict[str, object], path: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_rollout_spec(body)
    assert caught.value.path == path
    assert words in caught.value.message


def test_error_rate_flag_takes_a_percentage_or_a_fraction() -> None:
    assert parse_error_rate("1%") == 0.01
    assert parse_error_rate("0.05") == 0.05
    with pytest.raises(ValueError, match="percentage"):
        parse_error_rate("5")
