"""A YAML stream in, the injected stream out: documents nothing changed in are copied byte for byte.

The stream is cut at its ``---`` lines and each piece parsed alone. The whole stream is first
checked with PyYAML's safe loader (YAML 1.1, as kubectl and Compose read it) so that bad input is
refused with its line and column. A piece that gains a sidecar is loaded with ruamel.yaml in
round-trip mode, changed in place and written back with the indentation guessed from the piece, so
its comments, key order, quoting, flow style and anchors survive; only the added parts are new. A
second run changes nothing at all: every document is then already injected, so every piece is
copied as it came.
"""

from __future__ import annotations

import io
import itertools
import re
from dataclasses import dataclass
from typing import Any, Final

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError as RoundTripError

from mesh.inject.compose import inject_compose, is_compose
from mesh.inject.kubernetes import inject_object, is_kubernetes
from mesh.inject.settings import Change, InjectError, InjectSettings, Outcome

_SEPARATOR: Final = re.compile(r"^---(?=\s|$)", re.MULTILINE)
_HEADER: Final = re.compile(r"---[ \t]*(#[^\n]*)?\n")
_KEY_LINE: Final = re.compile(r"^( *)[^\s#-][^\n]*:[ \t]*(#[^\n]*)?$")
_INDENTED: Final = re.compile(r"^( +)(- )?[^\s#]")


@dataclass(frozen=True, slots=True)
class InjectResult:
    text: str
    changes: tuple[Change, ...]

    @property
    def changed(self) -> bool:
        return any(c.action == "inject" for c in self.changes)


def split_stream(text: str) -> list[str]:
    """The pieces of a multi-document stream; each piece but the first starts with its ``---`` line."""
    starts = [m.start() for m in _SEPARATOR.finditer(text) if m.start() > 0]
    bounds = [0, *starts, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def inject_text(text: str, settings: InjectSettings) -> InjectResult:
    """Inject every Kubernetes workload and compose service in ``text``; raise InjectError on bad input."""
    try:
        list(yaml.safe_load_all(text))  # the whole stream must be valid YAML, with yaml's line/column if not
    except yaml.YAMLError as exc:
        raise InjectError(_yaml_problem(exc), "input") from None
    pieces = split_stream(text)
    out: list[str] = []
    changes: list[Change] = []
    several = len(pieces) > 1
    for number, piece in enumerate(pieces, start=1):
        where = f"document {number}" if several else ""
        header, body = _split_header(piece)
        try:
            document = _round_trip().load(body)
        except RoundTripError as exc:
            raise InjectError(
                f"cannot read this document on its own ({_yaml_problem(exc)})", where or "input"
            ) from None
        outcome = _inject_document(document, settings, where)
        changes.extend(outcome.changes)
        out.append(header + _dump(outcome.document, body) if outcome.changed else piece)
    return InjectResult("".join(out), tuple(changes))


def _yaml_problem(exc: Exception) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is None:
        return f"invalid YAML: {problem}"
    return f"invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {problem}"


def _inject_document(document: Any, settings: InjectSettings, where: str) -> Outcome:
    if is_kubernetes(document):
        return inject_object(document, settings, where)
    if is_compose(document):
        return inject_compose(document, settings)
    return Outcome(None)


def _split_header(piece: str) -> tuple[str, str]:
    """``("---\\n", rest)`` for a piece that opens with a bare ``---`` line, else ``("", piece)``."""
    match = _HEADER.match(piece)
    return (piece[: match.end()], piece[match.end() :]) if match else ("", piece)


def _round_trip() -> YAML:
    loader = YAML(typ="rt")
    loader.preserve_quotes = True
    loader.width = 4096  # never re-wrap long lines
    loader.brace_single_entry_mapping_in_flow_sequence = True  # keep `[{a: 1}]`, not `[a: 1]`
    return loader


def guess_indent(text: str) -> tuple[int, int, int]:
    """(mapping indent, sequence indent, dash offset) as the text writes them; (2, 2, 0) when it does not say.

    ``key:`` then ``- item`` at the key's column is Kubernetes' usual style (offset 0); ``  - item``
    under the key is Compose's (offset 2, sequence indent 4).
    """
    mapping, offset = 0, -1
    lines = text.splitlines()
    for previous, line in itertools.pairwise(lines):
        parent = _KEY_LINE.match(previous)
        child = _INDENTED.match(line) or re.match(r"^()(- )", line)
        if parent is None or child is None:
            continue
        step = len(child.group(1)) - len(parent.group(1))
        if child.group(2):
            if offset < 0 and step >= 0:
                offset = step
        elif step > 0 and not mapping:
            mapping = step
        if mapping and offset >= 0:
            break
    mapping = mapping or 2
    offset = max(offset, 0)
    return mapping, offset + 2, offset


def _dump(document: Any, original: str) -> str:
    mapping, sequence, offset = guess_indent(original)
    dumper = _round_trip()
    dumper.indent(mapping=mapping, sequence=sequence, offset=offset)
    stream = io.StringIO()
    dumper.dump(document, stream)
    return stream.getvalue()


def describe(result: InjectResult) -> str:
    """The ``--check`` report: one line per workload."""
    lines = [
        f"{c.workload}: would {c.detail}" if c.action == "inject" else f"{c.workload}: skipped ({c.detail})"
        for c in result.changes
    ]
    if not result.changed:
        lines.append("no changes: nothing to inject")
    return "".join(f"{line}\n" for line in lines)
