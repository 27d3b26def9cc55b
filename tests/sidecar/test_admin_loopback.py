"""The admin API binds loopback only unless `--admin-allow-remote` says otherwise."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from discovery.runtime.addresses import is_loopback
from mesh.cli import app
from sidecar.workers import plan_from_options


@pytest.mark.parametrize("address", ["127.0.0.1:15000", "127.0.0.9:0", "[::1]:15000", "localhost:15000", ":15000"])
def test_loopback_admin_addresses_are_accepted(address: str) -> None:
    assert plan_from_options({"admin_addr": address}).server.admin_addr == address


@pytest.mark.parametrize("address", ["0.0.0.0:15000", "[::]:15000", "10.1.2.3:15000", "admin.example.com:15000"])
def test_other_admin_addresses_need_the_flag(address: str) -> None:
    with pytest.raises(ValueError, match=r"--admin-addr: .* is not a loopback address") as error:
        plan_from_options({"admin_addr": address})
    assert "--admin-allow-remote" in str(error.value)
    plan = plan_from_options({"admin_addr": address, "admin_allow_remote": True})
    assert plan.server.admin_addr == address


def test_is_loopback() -> None:
    assert is_loopback("127.0.0.1")
    assert is_loopback("::1")
    assert is_loopback("[::1]")
    assert is_loopback("::ffff:127.0.0.1")
    assert is_loopback("LOCALHOST.")
    assert not is_loopback("0.0.0.0")
    assert not is_loopback("::")
    assert not is_loopback("192.168.1.10")
    assert not is_loopback("localhost.example.com")


def test_the_cli_refuses_a_remote_admin_addr_before_starting(tmp_path: object) -> None:
    result = CliRunner().invoke(app, ["sidecar", "--service", "web", "--admin-addr", "0.0.0.0:15000"])
    assert result.exit_code == 2
    assert "not a loopback address" in result.output
    result = CliRunner().invoke(app, ["sidecar", "--help"], env={"COLUMNS": "200"})
    assert "--admin-allow-remote" in result.output
