from __future__ import annotations

import dataclasses

import pytest

from lb import NO_HINTS, Endpoint, PickContext


def test_endpoint_is_frozen_and_defaults() -> None:
    ep = Endpoint("10.0.0.1:80", "10.0.0.1", 80)
    assert (ep.weight, ep.healthy, ep.metadata) == (1, True, ())
    with pytest.raises(dataclasses.FrozenInstanceError):
        ep.weight = 2  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"key": ""}, "endpoint.key"),
        ({"weight": 0}, "endpoint.weight"),
        ({"weight": True}, "endpoint.weight"),
        ({"weight": 1.5}, "endpoint.weight"),
        ({"port": 70000}, "endpoint.port"),
    ],
)
def test_endpoint_rejects_bad_fields(kwargs: dict[str, object], field: str) -> None:
    values: dict[str, object] = {"key": "a:1", "host": "a", "port": 1, **kwargs}
    with pytest.raises(ValueError, match=field):
        Endpoint(**values)  # type: ignore[arg-type]


def test_pick_context_defaults_are_empty_hints() -> None:
    assert PickContext() == NO_HINTS
    assert NO_HINTS.hash_key is None
    assert NO_HINTS.exclude == frozenset()
