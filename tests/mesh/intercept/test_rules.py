"""The interception rule set as text: what is redirected, what is not, and bad settings named."""

from __future__ import annotations

import pytest

from mesh.intercept.rules import (
    CHAINS,
    InterceptionError,
    InterceptionSettings,
    clean_commands,
    describe,
    parse_cidrs,
    parse_ports,
    restore_text,
)


def rules(settings: InterceptionSettings) -> list[str]:
    return [line for line in restore_text(settings).splitlines() if line.startswith("-A")]


def test_default_redirects_all_tcp_but_the_sidecar_own_traffic_and_loopback() -> None:
    text = restore_text(InterceptionSettings())
    assert text.startswith("*nat\n")
    assert text.endswith("COMMIT\n")
    lines = rules(InterceptionSettings())
    assert "-A PREROUTING -p tcp -j MESH_INBOUND" in lines
    assert "-A OUTPUT -p tcp -j MESH_OUTPUT" in lines
    assert "-A MESH_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006" in lines
    assert "-A MESH_REDIRECT -p tcp -j REDIRECT --to-ports 15001" in lines
    output = [line for line in lines if line.startswith("-A MESH_OUTPUT")]
    # Exclusions come before the catch-all redirect, the sidecar's uid first.
    assert output[0] == "-A MESH_OUTPUT -m owner --uid-owner 1337 -j RETURN"
    assert output[-1] == "-A MESH_OUTPUT -j MESH_REDIRECT"
    assert "-A MESH_OUTPUT -o lo -j RETURN" in output
    inbound = [line for line in lines if line.startswith("-A MESH_INBOUND")]
    assert inbound[-1] == "-A MESH_INBOUND -p tcp -j MESH_IN_REDIRECT"
    # The sidecar's own ports are never redirected to themselves.
    assert "-A MESH_INBOUND -p tcp --dport 15006 -j RETURN" in inbound


def test_every_chain_is_declared_once() -> None:
    text = restore_text(InterceptionSettings())
    for chain in CHAINS:
        assert text.count(f":{chain} - [0:0]") == 1


def test_exclusions_and_gid() -> None:
    settings = InterceptionSettings(
        proxy_uid=101,
        proxy_gid=102,
        exclude_inbound_ports=(22,),
        exclude_outbound_cidrs=("10.0.0.0/8",),
        exclude_outbound_ports=(5432, 6379),
    )
    lines = rules(settings)
    assert "-A MESH_OUTPUT -m owner --uid-owner 101 -j RETURN" in lines
    assert "-A MESH_OUTPUT -m owner --gid-owner 102 -j RETURN" in lines
    assert "-A MESH_INBOUND -p tcp --dport 22 -j RETURN" in lines
    assert "-A MESH_OUTPUT -d 10.0.0.0/8 -j RETURN" in lines
    assert "-A MESH_OUTPUT -p tcp --dport 5432 -j RETURN" in lines
    assert lines.index("-A MESH_OUTPUT -p tcp --dport 6379 -j RETURN") < lines.index("-A MESH_OUTPUT -j MESH_REDIRECT")


def test_explicit_lists_redirect_only_what_they_name() -> None:
    lines = rules(InterceptionSettings(inbound_ports=(8080, 15006), outbound_cidrs=("198.18.0.0/15",)))
    assert "-A MESH_INBOUND -p tcp --dport 8080 -j MESH_IN_REDIRECT" in lines
    assert not any("--dport 15006 -j MESH_IN_REDIRECT" in line for line in lines)
    assert "-A MESH_INBOUND -p tcp -j MESH_IN_REDIRECT" not in lines
    assert "-A MESH_OUTPUT -d 198.18.0.0/15 -j MESH_REDIRECT" in lines
    assert "-A MESH_OUTPUT -j MESH_REDIRECT" not in lines


def test_empty_lists_turn_a_direction_off() -> None:
    lines = rules(InterceptionSettings(inbound_ports=(), outbound_cidrs=()))
    assert not any(line.startswith(("-A PREROUTING", "-A OUTPUT")) for line in lines)
    assert describe(InterceptionSettings(inbound_ports=(), outbound_cidrs=()))[0].startswith("inbound TCP (off)")


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        (InterceptionSettings(proxy_uid=-1), "proxy_uid"),
        (InterceptionSettings(proxy_gid=-2), "proxy_gid"),
        (InterceptionSettings(outbound_port=0), "outbound_port"),
        (InterceptionSettings(inbound_port=70000), "inbound_port"),
        (InterceptionSettings(inbound_port=15001), "inbound_port"),
        (InterceptionSettings(exclude_inbound_ports=(0,)), "exclude_inbound_ports"),
        (InterceptionSettings(exclude_outbound_cidrs=("nope",)), "exclude_outbound_cidrs"),
    ],
)
def test_bad_settings_name_their_field(settings: InterceptionSettings, field: str) -> None:
    with pytest.raises(InterceptionError) as caught:
        restore_text(settings)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")


def test_parsing_lists() -> None:
    assert parse_ports("p", "*") is None
    assert parse_ports("p", "") == ()
    assert parse_ports("p", " 80, 443,80 ") == (80, 443)
    assert parse_cidrs("c", "*") is None
    assert parse_cidrs("c", "10.1.2.3, 10.0.0.0/8") == ("10.1.2.3/32", "10.0.0.0/8")
    assert parse_cidrs("c", "10.1.2.3/8") == ("10.0.0.0/8",)
    with pytest.raises(InterceptionError, match="'http' is not a port number"):
        parse_ports("--exclude-outbound-ports", "http")
    with pytest.raises(InterceptionError, match="only IPv4"):
        parse_cidrs("--outbound-cidrs", "fd00::/8")


def test_clean_removes_jumps_before_chains() -> None:
    commands = clean_commands()
    deletes = [i for i, c in enumerate(commands) if "-D" in c]
    drops = [i for i, c in enumerate(commands) if "-X" in c]
    assert max(deletes) < min(drops)
    assert {c[-1] for c in commands if "-X" in c} == set(CHAINS)
