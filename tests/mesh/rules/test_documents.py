"""Request bodies → resources: YAML documents, JSON, kind: List; envelope checks; error locations."""

from __future__ import annotations

import json

import pytest
import yaml

from mesh.model.reader import ConfigError
from mesh.rules.documents import RuleError, parse_documents, split_documents
from tests.mesh.rules.helpers import dr, vs


def _yaml(*docs: object) -> bytes:
    return yaml.safe_dump_all(docs).encode()


def test_yaml_documents_json_objects_lists_and_kind_list_are_read() -> None:
    both = [dr(), vs()]
    assert [r.key.kind for r in parse_documents(_yaml(*both))] == ["DestinationRule", "VirtualService"]
    assert [r.key.kind for r in parse_documents(json.dumps(both).encode())] == ["DestinationRule", "VirtualService"]
    listed = {"apiVersion": "v1", "kind": "List", "items": both}
    assert len(parse_documents(json.dumps(listed).encode())) == 2
    assert len(parse_documents(_yaml(listed, vs("ratings")))) == 3
    assert parse_documents(json.dumps(vs()).encode())[0].key.name == "reviews"


def test_empty_documents_are_skipped_but_an_empty_body_is_an_error() -> None:
    assert len(parse_documents(b"---\n" + _yaml(vs()) + b"---\n...\n")) == 1
    with pytest.raises(RuleError, match="no resources"):
        parse_documents(b"---\n")


def test_errors_carry_document_index_and_resource() -> None:
    bad = vs("ratings")
    bad["spec"]["http"][0]["route"][0]["weight"] = 50
    with pytest.raises(RuleError) as info:
        parse_documents(_yaml(dr(), bad))
    assert info.value.document == 1
    assert info.value.resource == "VirtualService default/ratings"
    assert info.value.path == "spec.http[0].route[0].weight"
    assert "VirtualService default/ratings: spec.http[0].route[0].weight" in str(info.value)


def test_yaml_syntax_errors_report_the_line_in_the_whole_body() -> None:
    body = _yaml(dr()) + b"---\nkind: VirtualService\nspec: [unclosed\n"
    lines = body.count(b"\n")
    with pytest.raises(ConfigError) as info:
        parse_documents(body)
    assert f"line {lines + 1}" in str(info.value) or f"line {lines}" in str(info.value)


def test_duplicate_keys_and_bad_json_are_refused() -> None:
    with pytest.raises(ConfigError, match="duplicate key 'spec'"):
        parse_documents(b"kind: VirtualService\nspec: {}\nspec: {}\n")
    with pytest.raises(ConfigError, match="invalid JSON"):
        parse_documents(b'{"kind": ')


def test_the_same_resource_twice_in_one_body_is_refused() -> None:
    with pytest.raises(RuleError) as info:
        parse_documents(_yaml(vs(), vs()))
    assert info.value.document == 1
    assert "appears twice" in info.value.message


@pytest.mark.parametrize(
    ("change", "error_path", "text"),
    [
        ({"kind": "VirtualServce"}, "kind", "unknown kind"),
        ({"kind": "virtualservice"}, "kind", "did you mean VirtualService"),
        ({"apiVersion": "security.istio.io/v1"}, "apiVersion", "networking.istio.io/v1"),
        ({"apiVersion": "networking.istio.io/v2"}, "apiVersion", "networking.istio.io/v1"),
        ({"metadata": {"name": "Reviews"}}, "metadata.name", "invalid name"),
        ({"metadata": {"name": "r", "namespace": "Prod"}}, "metadata.namespace", "invalid namespace"),
        ({"metadata": {"name": "r", "labels": {"a": 1}}}, "metadata.labels.a", "string"),
        ({"metadata": {"name": "r", "owner": "me"}}, "metadata.owner", "unknown key"),
        ({"metadata": {"name": "r", "resourceVersion": True}}, "metadata.resourceVersion", "string"),
        ({"metadata": {}}, "metadata.name", "required"),
        ({"spek": {}}, "spek", "unknown key"),
    ],
)
def test_envelope_errors_name_the_field(change: dict[str, object], error_path: str, text: str) -> None:
    data = {**vs(), **change}
    with pytest.raises(RuleError) as info:
        parse_documents(json.dumps(data).encode())
    assert info.value.path == error_path
    assert text in info.value.message


def test_server_fields_and_status_are_ignored_and_resource_version_kept() -> None:
    data = vs()
    data["metadata"].update(resourceVersion="7", generation=2, uid="x", creationTimestamp="2020-01-01T00:00:00Z")
    data["status"] = {"conditions": []}
    resource = parse_documents(json.dumps(data).encode())[0]
    assert resource.resource_version == "7"
    assert "status" not in resource.document()
    assert "uid" not in resource.document()["metadata"]


def test_default_namespace_applies_to_documents_without_one() -> None:
    resource = parse_documents(_yaml(vs()), default_namespace="prod")[0]
    assert resource.key.namespace == "prod"


def test_split_documents_reports_non_utf8() -> None:
    with pytest.raises(RuleError, match="UTF-8"):
        split_documents(b"\xff\xfe")
