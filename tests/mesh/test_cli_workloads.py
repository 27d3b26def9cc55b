"""`mesh inject` as a command: files and stdin, --check exit codes, flags and their MESH_* variables."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from mesh.cli import app
from tests.mesh.inject.manifests import BOOKINFO, COMPOSE

runner = CliRunner()


def test_inject_writes_the_injected_manifests(tmp_path: Path) -> None:
    path = tmp_path / "bookinfo.yaml"
    path.write_text(BOOKINFO)
    result = runner.invoke(app, ["inject", "-f", str(path)])
    assert result.exit_code == 0, result.output
    assert "mesh-sidecar" in result.stdout
    assert path.read_text() == BOOKINFO  # the file itself is not touched
    again = runner.invoke(app, ["inject", "-f", "-"], input=result.stdout)
    assert again.exit_code == 0
    assert again.stdout == result.stdout


def test_check_exits_1_when_something_would_change_and_0_when_not() -> None:
    check = runner.invoke(app, ["inject", "--check", "-f", "-"], input=COMPOSE)
    assert check.exit_code == 1
    assert "compose service web: would add service web-mesh-sidecar (service web, app port 80)" in check.stdout
    injected = runner.invoke(app, ["inject", "-f", "-"], input=COMPOSE).stdout
    clean = runner.invoke(app, ["inject", "--check", "-f", "-"], input=injected)
    assert clean.exit_code == 0
    assert "no changes" in clean.stdout


def test_image_and_control_address_from_flags_or_environment() -> None:
    by_env = runner.invoke(
        app,
        ["inject", "-f", "-"],
        input=COMPOSE,
        env={"MESH_INJECT_IMAGE": "ghcr.io/example/pymesh:1", "MESH_INJECT_CONTROL_ADDR": "http://cp:15010"},
    )
    assert by_env.exit_code == 0, by_env.output
    sidecar = yaml.safe_load(by_env.stdout)["services"]["web-mesh-sidecar"]
    assert sidecar["image"] == "ghcr.io/example/pymesh:1"
    assert sidecar["environment"]["MESH_CONTROL_ADDR"] == "http://cp:15010"
    by_flag = runner.invoke(
        app, ["inject", "-f", "-", "--image", "img:2"], input=COMPOSE, env={"MESH_CONTROL_ADDR": "http://local:1"}
    )
    sidecar = yaml.safe_load(by_flag.stdout)["services"]["web-mesh-sidecar"]
    assert sidecar["image"] == "img:2"
    assert sidecar["environment"]["MESH_CONTROL_ADDR"] == "http://control:15010"  # not this machine's own


def test_bad_input_exits_1_naming_file_and_field(tmp_path: Path) -> None:
    missing = runner.invoke(app, ["inject", "-f", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 1
    assert "cannot read" in missing.stderr
    bad = runner.invoke(app, ["inject", "-f", "-"], input="services:\n  web:\n    image: x\n    expose: 80\n")
    assert bad.exit_code == 1
    assert "error: -: services.web.expose: expected a list" in bad.stderr
