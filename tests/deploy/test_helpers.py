"""The checks the deploy tests rely on catch what they are for."""

from __future__ import annotations

import pytest

from tests.deploy.helpers import check_invocation, command_spec


def test_flags_and_variables_come_from_the_real_commands() -> None:
    spec = command_spec("sidecar")
    assert {"--service", "--app-port", "--inbound-addr"} <= spec.flags
    assert "MESH_OUTBOUND_ADDR" in spec.envvars
    assert "MESH_INTERNAL" in command_spec("registrar").envvars  # Registrator's flags, read from MESH_*
    check_invocation(["sidecar", "--service=reviews"], {"MESH_CONTROL_ADDR": "http://control:15010"}, "ok")


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["sidecar", "--servce=reviews"], {}, "has no flag --servce"),
        (["dns", "--dns-addr=0.0.0.0:8600"], {"MESH_DNS_ADR": "x"}, "does not read MESH_DNS_ADR"),
        (["proxy"], {}, "is not a command"),
    ],
)
def test_typos_are_caught(argv: list[str], env: dict[str, str], message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        check_invocation(argv, env, "here")
