"""The YAML stream around injection: splitting, byte-identical passes, kept comments, errors."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest
import yaml

from mesh.inject.documents import describe, guess_indent, inject_text, split_stream
from mesh.inject.settings import InjectError, InjectSettings
from tests.mesh.inject.manifests import BOOKINFO, COMPOSE

SETTINGS = InjectSettings()


def test_split_keeps_every_byte() -> None:
    pieces = split_stream(BOOKINFO)
    assert "".join(pieces) == BOOKINFO
    assert len(pieces) == 8
    assert all(piece.startswith("---") for piece in pieces[1:])
    assert split_stream("a: 1\n---\n--- x\n")[1:] == ["---\n", "--- x\n"]
    assert split_stream("key: '--- not a separator'\n") == ["key: '--- not a separator'\n"]


@pytest.mark.parametrize("text", [BOOKINFO, COMPOSE])
def test_injecting_twice_changes_nothing(text: str) -> None:
    once = inject_text(text, SETTINGS)
    assert once.changed
    twice = inject_text(once.text, SETTINGS)
    assert not twice.changed
    assert twice.text == once.text  # byte for byte


def test_untouched_documents_keep_their_bytes_and_comments() -> None:
    out = inject_text(BOOKINFO, SETTINGS).text
    pieces = split_stream(out)
    original = split_stream(BOOKINFO)
    assert pieces[0] == original[0]  # the Service, with its banner comments
    assert pieces[1] == original[1]  # "# referenced below" survives
    assert pieces[6] == original[6]  # the opted-out Deployment, comment and flow style intact
    assert pieces[7] == original[7]
    assert pieces[2] != original[2]


ANCHORED_COMPOSE = """\
# shared settings
x-base: &base
  image: example/app:1
  restart: unless-stopped

services:
  api:
    <<: *base
    ports: ["127.0.0.1:9000:9000"]   # published on loopback only
    environment: {MODE: "prod", DEBUG: 'no'}
  worker:
    <<: *base
    command: [work, --fast]
"""


@pytest.mark.parametrize("text", [BOOKINFO, COMPOSE, ANCHORED_COMPOSE])
def test_a_rewritten_document_only_gains_lines(text: str) -> None:
    # Comments, quoting, flow style, anchors and merge keys of rewritten documents survive (ruamel round trip).
    out = inject_text(text, SETTINGS).text
    removed = [line for line in difflib.ndiff(text.splitlines(), out.splitlines()) if line.startswith("- ")]
    assert removed == []


def test_a_comment_on_an_anchor_line_survives_on_the_next_line() -> None:
    # ruamel.yaml moves a comment that follows an anchor on a mapping key to the line below (docs/workloads.md).
    text = "x-base: &base   # shared\n  image: a\nservices:\n  web:\n    <<: *base\n    expose: [80]\n"
    out = inject_text(text, SETTINGS).text
    assert out.splitlines()[:2] == ["x-base: &base", "                # shared"]


def test_anchors_and_merge_keys_still_resolve_after_injection() -> None:
    services = yaml.safe_load(inject_text(ANCHORED_COMPOSE, SETTINGS).text)["services"]
    assert services["worker"]["image"] == "example/app:1"
    assert services["api"]["environment"] == {"MODE": "prod", "DEBUG": "no"}
    assert list(services) == ["api", "api-mesh-sidecar", "worker", "worker-mesh-sidecar"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a:\n  b:\n  - x\n", (2, 2, 0)),  # Kubernetes' usual style
        ("a:\n  b:\n    - x\n", (2, 4, 2)),  # Compose's usual style
        ("a:\n    b:\n        - x\n", (4, 6, 4)),
        ("a: [1]\n", (2, 2, 0)),  # nothing to go by
        ("# c\nitems:\n- a: 1\n  b:\n    c: 2\n", (2, 2, 0)),
    ],
)
def test_indentation_is_guessed_from_the_document(text: str, expected: tuple[int, int, int]) -> None:
    assert guess_indent(text) == expected


def test_nothing_to_inject_returns_the_input_unchanged() -> None:
    text = "# just config\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: '1'}\n---\n"
    result = inject_text(text, SETTINGS)
    assert result.text == text
    assert not result.changed
    assert describe(result) == "no changes: nothing to inject\n"


def test_describe_lists_each_workload() -> None:
    report = describe(inject_text(BOOKINFO, SETTINGS))
    assert "Deployment/details-v1: would add container mesh-sidecar (service details, app port 9080)\n" in report
    assert (
        "DaemonSet/node-agent: would add container mesh-sidecar (service node-agent, no containerPort: outbound only)\n"
        in report
    )
    assert 'Deployment/legacy: skipped (sidecar.mesh.io/inject: "false")\n' in report
    assert "no changes" not in report


def test_invalid_yaml_is_an_error_with_its_line() -> None:
    with pytest.raises(InjectError) as caught:
        inject_text("a: 1\n---\nb: x: y\n", SETTINGS)
    assert str(caught.value) == "input: invalid YAML at line 3, column 5: mapping values are not allowed here"


def test_errors_name_the_document() -> None:
    bad = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\n"
        + "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {}\n"
    )
    with pytest.raises(InjectError) as caught:
        inject_text(bad, SETTINGS)
    assert caught.value.path == "document 2: spec.containers"


ROOT = Path(__file__).resolve().parents[3]
REAL_FILES = sorted(
    [*ROOT.glob("deploy/k8s/*.yaml"), ROOT / "deploy/compose/docker-compose.yml", *ROOT.glob("examples/**/*.yaml")]
)


@pytest.mark.parametrize("path", REAL_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_projects_own_manifests_round_trip(path: Path) -> None:
    text = path.read_text()
    once = inject_text(text, SETTINGS)
    assert inject_text(once.text, SETTINGS).text == once.text
    assert len(list(yaml.safe_load_all(once.text))) == len(list(yaml.safe_load_all(text)))
    diff = list(difflib.ndiff(text.splitlines(), once.text.splitlines()))
    added = [line[2:] for line in diff if line.startswith("+ ")]
    for removed in (line[2:] for line in diff if line.startswith("- ")):
        # the only line that may change is a flow-style annotations map that gained mesh.io/injected
        assert removed.rstrip().endswith("}"), removed
        extended = removed.rstrip()[:-1] + ", mesh.io/injected: 'true'}"
        assert extended in added, removed
