"""Request bodies → resources: YAML (several documents), JSON (an object or a list), ``kind: List`` (pure).

``parse_documents`` reads the whole body and validates every resource in it, stopping at the
first error, which carries the document's index and, once known, the resource's name, so the
API can answer ``{"error": ..., "path": "spec.http[0].route[1].weight", "document": 1,
"resource": "VirtualService default/reviews"}``. A body naming one resource twice is refused.
YAML line numbers in errors count from the top of the whole body.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from mesh.model.reader import ConfigError, load_text
from mesh.rules.resource import DEFAULT_NAMESPACE, Resource, parse_resource

MAX_BODY_BYTES = 8 * 1024 * 1024
_DOC_START = re.compile(r"^---(?:[ \t]+(.*))?$")
_DOC_END = re.compile(r"^\.\.\.[ \t]*$")


class RuleError(ConfigError):
    """A rejected document: the field ``path`` inside it, the 0-based ``document`` index in the
    body, and the ``resource`` (``Kind ns/name``) when it got that far."""

    def __init__(self, path: str, message: str, *, document: int | None = None, resource: str = "") -> None:
        super().__init__(path, message)
        self.document = document
        self.resource = resource

    def __str__(self) -> str:
        where = []
        if self.resource:
            where.append(self.resource)
        elif self.document is not None:
            where.append(f"document {self.document}")
        prefix = f"{' '.join(where)}: " if where else ""
        return prefix + (f"{self.path}: {self.message}" if self.path else self.message)


@dataclass(frozen=True, slots=True)
class Document:
    index: int
    data: object


def split_documents(raw: bytes, *, json_body: bool | None = None) -> list[Document]:
    """Decode the body into documents; ``json_body`` None: JSON when it starts with ``{`` or ``[``."""
    if len(raw) > MAX_BODY_BYTES:
        raise RuleError("", f"body is larger than {MAX_BODY_BYTES // (1024 * 1024)} MiB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RuleError("", f"body is not UTF-8 text: {exc}") from exc
    stripped = text.lstrip()
    if json_body is None:
        json_body = stripped.startswith(("{", "["))
    decoded: list[object]
    if json_body:
        data = load_text(raw, "json")
        decoded = list(data) if isinstance(data, list) else [data]
    else:
        decoded = [load_text(chunk.encode(), "yaml") for chunk in _yaml_chunks(text)]
    documents: list[Document] = []
    for data in decoded:
        if data is None:
            continue  # an empty YAML document (a trailing ---)
        for item in _expand_list(data, len(documents)):
            documents.append(Document(len(documents), item))
    if not documents:
        raise RuleError("", "the body holds no resources")
    return documents


def parse_documents(
    raw: bytes, *, json_body: bool | None = None, default_namespace: str = DEFAULT_NAMESPACE
) -> list[Resource]:
    """Every resource in the body, validated; the first problem raises ``RuleError``."""
    resources: list[Resource] = []
    seen: dict[str, int] = {}
    for document in split_documents(raw, json_body=json_body):
        resource = parse_one(document, default_namespace)
        previous = seen.get(resource.key.id)
        if previous is not None:
            raise RuleError(
                "metadata.name",
                f"{resource.key} appears twice in this body (documents {previous} and {document.index})",
                document=document.index,
                resource=str(resource.key),
            )
        seen[resource.key.id] = document.index
        resources.append(resource)
    return resources


def parse_one(document: Document, default_namespace: str = DEFAULT_NAMESPACE) -> Resource:
    try:
        return parse_resource(document.data, default_namespace=default_namespace)
    except RuleError:
        raise
    except ConfigError as exc:
        raise RuleError(exc.path, exc.message, document=document.index, resource=_describe(document.data)) from exc


def _describe(data: object) -> str:
    """``Kind ns/name`` from a document that failed validation, as far as it can be read."""
    if not isinstance(data, Mapping):
        return ""
    kind = data.get("kind")
    metadata = data.get("metadata")
    if not isinstance(kind, str) or not isinstance(metadata, Mapping):
        return ""
    name = metadata.get("name")
    namespace = metadata.get("namespace") or DEFAULT_NAMESPACE
    if not isinstance(name, str) or not isinstance(namespace, str):
        return ""
    return f"{kind} {namespace}/{name}"


def _expand_list(data: object, start: int) -> list[object]:
    """A ``kind: List`` (``kubectl get -o yaml`` output) stands for its items."""
    if isinstance(data, Mapping) and data.get("kind") == "List":
        items = data.get("items")
        if not isinstance(items, list):
            raise RuleError("items", "a List needs items: [...]", document=start)
        return list(items)
    return [data]


def _yaml_chunks(text: str) -> list[str]:
    """Split at ``---`` lines; each chunk is padded with blank lines so YAML errors report the line
    number in the whole body."""
    chunks: list[str] = []
    current: list[str] = []
    start = 0
    for number, line in enumerate(text.splitlines()):
        marker = _DOC_START.match(line)
        if marker is not None or _DOC_END.match(line):
            if current:
                chunks.append("\n" * start + "\n".join(current))
            current = []
            start = number + 1
            rest = marker.group(1) if marker is not None else None
            if rest:
                current.append(rest)
                start = number
            continue
        current.append(line)
    if current:
        chunks.append("\n" * start + "\n".join(current))
    return chunks


__all__ = ["MAX_BODY_BYTES", "Document", "RuleError", "parse_documents", "parse_one", "split_documents"]
