"""Every rule file under ``examples/`` is valid: a dry-run apply on a real control plane accepts it
(on top of ``examples/bookinfo/destination-rule-all.yaml``, which defines the subsets the
VirtualServices name), and each directory's README says how to apply each of its files."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from tests.mesh.control.bookinfo import BOOKINFO, EXAMPLES

RULE_FILES = sorted(p for p in EXAMPLES.rglob("*") if p.suffix in (".yaml", ".yml", ".json"))


def test_examples_exist() -> None:
    assert len([p for p in RULE_FILES if p.parent == BOOKINFO]) >= 11


async def put(api: aiohttp.ClientSession, path: Path, *, dry_run: bool) -> dict[str, object]:
    content_type = "application/json" if path.suffix == ".json" else "application/yaml"
    params = {"dry_run": "true"} if dry_run else {}
    body = await asyncio.to_thread(path.read_bytes)
    async with api.put("/v1/mesh/config", data=body, params=params, headers={"Content-Type": content_type}) as r:
        result: dict[str, object] = await r.json()
        assert r.status == 200, f"{path.relative_to(EXAMPLES)}: {result}"
        return result


@pytest.mark.parametrize("path", RULE_FILES, ids=[str(p.relative_to(EXAMPLES)) for p in RULE_FILES])
async def test_example_passes_validation(api: aiohttp.ClientSession, path: Path) -> None:
    await put(api, BOOKINFO / "destination-rule-all.yaml", dry_run=False)
    result = await put(api, path, dry_run=True)
    assert result["dry_run"] is True
    assert result["resources"]


@pytest.mark.parametrize("path", RULE_FILES, ids=[str(p.relative_to(EXAMPLES)) for p in RULE_FILES])
def test_readme_says_how_to_apply_the_file(path: Path) -> None:
    readme = (path.parent / "README.md").read_text()
    assert f"mesh apply -f {path.relative_to(EXAMPLES.parent)}" in readme
