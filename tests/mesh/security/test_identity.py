"""SPIFFE IDs: parsing, formatting, and errors that name the part at fault."""

from __future__ import annotations

import pytest

from mesh.security.identity import IdentityError, SpiffeId, parse_principal, parse_spiffe_id


def test_round_trip_and_principal_form() -> None:
    parsed = parse_spiffe_id("spiffe://cluster.local/ns/default/sa/web")
    assert parsed == SpiffeId("cluster.local", "default", "web")
    assert parsed.uri == "spiffe://cluster.local/ns/default/sa/web"
    assert str(parsed) == parsed.uri
    assert parsed.principal == "cluster.local/ns/default/sa/web"
    assert parse_principal("cluster.local/ns/default/sa/web") == parsed
    assert parse_principal(parsed.uri) == parsed


@pytest.mark.parametrize(
    ("text", "part", "why"),
    [
        ("cluster.local/ns/a/sa/b", "scheme", "spiffe://"),
        ("SPIFFE://td/ns/a/sa/b", "scheme", "lower case"),
        ("https://td/ns/a/sa/b", "scheme", "'spiffe'"),
        ("spiffe:///ns/a/sa/b", "trust domain", "empty"),
        ("spiffe://Cluster.Local/ns/a/sa/b", "trust domain", "lower-case"),
        ("spiffe://td:8080/ns/a/sa/b", "trust domain", "port"),
        ("spiffe://user@td/ns/a/sa/b", "trust domain", "user info"),
        ("spiffe://td", "path", "missing"),
        ("spiffe://td/", "path", "missing"),
        ("spiffe://td/ns/a/sa/b/extra", "path", "/ns/<namespace>/sa/<service>"),
        ("spiffe://td/namespace/a/sa/b", "path", "/ns/<namespace>/sa/<service>"),
        ("spiffe://td/ns//sa/b", "path", "empty"),
        ("spiffe://td/ns/../sa/b", "path", "'..'"),
        ("spiffe://td/ns/a b/sa/b", "namespace", "letters, digits"),
        ("spiffe://td/ns/a/sa/b%20c", "service account", "letters, digits"),
        ("spiffe://td/ns/a/sa/b?x=1", "id", "query"),
        ("spiffe://td/ns/a/sa/b#frag", "id", "fragment"),
        ("spiffe://td/ns/a/sa/" + "b" * 3000, "id", "longer"),
    ],
)
def test_invalid_ids_name_the_part(text: str, part: str, why: str) -> None:
    with pytest.raises(IdentityError) as info:
        parse_spiffe_id(text)
    assert info.value.part == part, info.value
    assert why in info.value.message, info.value


def test_constructor_checks_its_parts() -> None:
    with pytest.raises(IdentityError) as info:
        SpiffeId("cluster.local", "default", "my service")
    assert info.value.part == "service account"
