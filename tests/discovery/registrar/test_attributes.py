"""SERVICE_* env vars and labels: precedence and malformed keys."""

from __future__ import annotations

from discovery.registrar.attributes import attributes_for_port, read_attributes


def test_prefix_is_stripped_and_keys_lower_cased_only_for_upper_case_prefix() -> None:
    attrs, problems = read_attributes(["SERVICE_Region=eu", "service_name=no", "PATH=/bin", "SERVICE_NOVALUE"], {})
    assert [(a.key, a.value) for a in attrs] == [("region", "eu")]
    assert problems == ()


def test_per_port_wins_over_generic_in_either_order() -> None:
    for env in (["SERVICE_80_NAME=a", "SERVICE_NAME=b"], ["SERVICE_NAME=b", "SERVICE_80_NAME=a"]):
        attrs, _ = read_attributes(env, {})
        on_80 = attributes_for_port(attrs, 80)
        assert on_80.get("name") == "a"
        assert on_80.source("name") == "SERVICE_80_NAME"
        assert "name" in on_80.from_port
        assert attributes_for_port(attrs, 443).get("name") == "b"


def test_labels_come_after_env_sorted() -> None:
    attrs, _ = read_attributes(["SERVICE_TAGS=env"], {"SERVICE_TAGS": "label", "SERVICE_A": "1"})
    port = attributes_for_port(attrs, 80)
    assert port.get("tags") == "label"
    assert port.source("tags") == "SERVICE_TAGS"


def test_empty_values_count_as_unset_but_still_set_per_port_precedence() -> None:
    attrs, _ = read_attributes(["SERVICE_80_NAME=", "SERVICE_NAME=generic"], {})
    port = attributes_for_port(attrs, 80)
    assert port.get("name") == ""
    assert "name" in port.from_port


def test_malformed_port_keys_are_problems() -> None:
    _, problems = read_attributes(
        [
            "SERVICE_80x_NAME=a",
            "SERVICE_-80_NAME=b",
            "SERVICE_0_NAME=c",
            "SERVICE_70000_TAGS=d",
            "SERVICE_80=e",
            "SERVICE_=f",
        ],
        {},
    )
    messages = {p.attribute: p.message for p in problems}
    assert "not a number" in messages["SERVICE_80x_NAME"]
    assert "not a number" in messages["SERVICE_-80_NAME"]
    assert "out of range" in messages["SERVICE_0_NAME"]
    assert "out of range" in messages["SERVICE_70000_TAGS"]
    assert "names no attribute" in messages["SERVICE_80"]
    assert "names no attribute" in messages["SERVICE_"]


def test_words_that_merely_contain_digits_stay_meta() -> None:
    attrs, problems = read_attributes(["SERVICE_V2_API=x", "SERVICE_BUILD_ID=7"], {})
    assert {a.key for a in attrs} == {"v2_api", "build_id"}
    assert problems == ()
