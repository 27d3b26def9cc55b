"""Go duration syntax, as Consul reads (time.ParseDuration) and writes (Duration.String()) it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from discovery.durations import DurationError, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("0s", 0.0),
        ("10s", 10.0),
        ("1m30s", 90.0),
        ("500ms", 0.5),
        ("1h0m0s", 3600.0),
        ("1.5s", 1.5),
        ("1.5h", 5400.0),
        (".5s", 0.5),
        ("2h45m", 9900.0),
        ("1h1m1s1ms", 3661.001),
        ("100us", 1e-4),
        ("100\u00b5s", 1e-4),
        ("100\u03bcs", 1e-4),
        ("42ns", 42e-9),
        ("-5s", -5.0),
        ("+5s", 5.0),
        ("72h", 259200.0),
    ],
)
def test_parse(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds, abs=1e-12)


@pytest.mark.parametrize(
    "text", ["", "s", "10", "10x", "ms", "1m30", "1 m", "10s5", "5.s.", "--5s", "1d", "-", "+", "0x10s", "1e3s"]
)
def test_parse_rejects_what_go_rejects(text: str) -> None:
    with pytest.raises(DurationError):
        parse_duration(text)


def test_parse_rejects_non_strings() -> None:
    with pytest.raises(DurationError, match="duration string"):
        parse_duration(10)  # type: ignore[arg-type]


def test_error_message_quotes_the_input_and_shows_the_syntax() -> None:
    with pytest.raises(DurationError) as info:
        parse_duration("10x")
    assert "'10x'" in str(info.value)
    assert "1m30s" in str(info.value)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (10, "10s"),
        (90, "1m30s"),
        (0.5, "500ms"),
        (3600, "1h0m0s"),
        (1.5, "1.5s"),
        (3661.5, "1h1m1.5s"),
        (0.0015, "1.5ms"),
        (1e-6, "1\u00b5s"),
        (1e-9, "1ns"),
        (60, "1m0s"),
        (-90, "-1m30s"),
        (86400, "24h0m0s"),
    ],
)
def test_format_like_go(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("text", ["1m30s", "500ms", "1h0m0s", "1.5s", "0s", "10s", "2h3m4.005s", "250\u00b5s", "7ns"])
def test_go_strings_round_trip(text: str) -> None:
    assert format_duration(parse_duration(text)) == text


@given(st.integers(min_value=-(10**15), max_value=10**15))
def test_whole_nanoseconds_round_trip(ns: int) -> None:
    seconds = ns / 1e9
    text = format_duration(seconds)
    assert round(parse_duration(text) * 1e9) == round(seconds * 1e9)
