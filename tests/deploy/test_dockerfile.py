"""deploy/Dockerfile: built from this repository (python:3.11-slim), every package copied, run as a user.

No image is built here (no image registry is reachable for the base image); the file is checked
against the repository it builds from.
"""

from __future__ import annotations

import json
import shlex
import tomllib

from tests.deploy.helpers import DEPLOY, ROOT

DOCKERFILE = DEPLOY / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = DOCKERFILE.read_text().replace("\\\n", " ")
    found = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def test_two_stages_on_python_311_slim_ending_as_an_unprivileged_user_running_mesh() -> None:
    steps = instructions()
    assert [args for word, args in steps if word == "FROM"] == ["python:3.11-slim AS build", "python:3.11-slim"]
    final = steps[max(i for i, (word, _) in enumerate(steps) if word == "FROM") :]
    users = [args for word, args in final if word == "USER"]
    assert users == ["mesh"]
    assert json.loads(next(args for word, args in final if word == "ENTRYPOINT")) == ["mesh"]
    assert json.loads(next(args for word, args in final if word == "CMD")) == ["up"]


def test_every_package_the_project_installs_is_copied_and_every_copied_path_exists() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {pattern.rstrip("*") for pattern in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    copied: set[str] = set()
    for word, args in instructions():
        if word == "COPY" and not args.startswith("--from"):
            *sources, _ = shlex.split(args)
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
                copied.add(source)
    assert packages <= copied, packages - copied
    assert {"pyproject.toml", project["project"]["readme"]} <= copied  # what `pip wheel .` reads


def test_the_build_context_filter_keeps_local_state_out() -> None:
    ignored = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert {".venv", ".git", "mesh-data", "**/__pycache__"} <= set(ignored)
