"""The ``--tags`` value: forced tags, optionally with Go-template actions over the inspected container.

Registrator evaluates ``-tags`` as a Go template against the inspected container (``{{.Config.Hostname}}``).
We support the forms people use in practice and refuse the rest at startup, naming the action:

- ``{{.Path.To.Field}}``: a field of Docker's inspect JSON (``.Name``, ``.Config.Hostname``, ``.Id``);
- ``{{index .Config.Labels "com.example.team"}}``: a map key (keys with dots need ``index``);
- ``{{toLower X}}`` / ``{{toUpper X}}`` around either form.

A missing field yields an empty string (Go prints ``<no value>``); maps and lists are not rendered.
The rendered text is split on commas into tags. Pure: no I/O.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

_ACTION: Final = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_PATH: Final = re.compile(r"^(\.[A-Za-z_][A-Za-z0-9_]*)+$")
_FUNCS: Final[Mapping[str, Callable[[str], str]]] = {"toLower": str.lower, "toUpper": str.upper}


class TemplateError(ValueError):
    """A ``--tags`` template we cannot evaluate."""


@dataclass(frozen=True, slots=True)
class _Expr:
    path: tuple[str, ...]
    keys: tuple[str, ...] = ()  # index arguments after the path
    func: str = ""

    def evaluate(self, data: Mapping[str, Any]) -> str:
        value: Any = data
        for step in self.path:
            value = _field(value, step)
        for key in self.keys:
            value = value.get(key) if isinstance(value, Mapping) else None
        if value is None:
            return ""
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, str | int | float):
            text = str(value)
        else:
            return ""
        return _FUNCS[self.func](text) if self.func else text


@dataclass(frozen=True, slots=True)
class TagsTemplate:
    """A parsed ``--tags`` value; ``render(container_json)`` gives the tags for one container."""

    parts: tuple[str | _Expr, ...] = ()

    @classmethod
    def parse(cls, text: str) -> TagsTemplate:
        parts: list[str | _Expr] = []
        pos = 0
        for match in _ACTION.finditer(text):
            if match.start() > pos:
                parts.append(text[pos : match.start()])
            parts.append(_parse_action(match.group(1)))
            pos = match.end()
        rest = text[pos:]
        if "{{" in rest or "}}" in rest:
            raise TemplateError(f"unbalanced '{{{{' or '}}}}' in {text!r}")
        if rest:
            parts.append(rest)
        return cls(tuple(parts))

    @property
    def static(self) -> bool:
        return all(isinstance(p, str) for p in self.parts)

    def render(self, container: Mapping[str, Any]) -> tuple[str, ...]:
        text = "".join(p if isinstance(p, str) else p.evaluate(container) for p in self.parts)
        return split_tags(text)


def split_tags(text: str) -> tuple[str, ...]:
    """Comma-separated tags; ``\\,`` is a literal comma. Blank entries are dropped, duplicates kept once."""
    tags: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(text):
        if text.startswith("\\,", i):
            current.append(",")
            i += 2
            continue
        if text[i] == ",":
            tags.append("".join(current))
            current = []
        else:
            current.append(text[i])
        i += 1
    tags.append("".join(current))
    return dedupe(t.strip() for t in tags if t.strip())


def dedupe(items: Any) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _parse_action(source: str) -> _Expr:
    body = source.strip().removeprefix("-").removesuffix("-").strip()
    try:
        words = shlex.split(body)
    except ValueError as exc:
        raise TemplateError(f"{{{{{source}}}}}: {exc}") from None
    func = ""
    if words and words[0] in _FUNCS:
        func, words = words[0], words[1:]
    expr = _parse_operand(words, source)
    return _Expr(expr.path, expr.keys, func)


def _parse_operand(words: Sequence[str], source: str) -> _Expr:
    if len(words) == 1 and _PATH.match(words[0]):
        return _Expr(_split_path(words[0]))
    if len(words) >= 3 and words[0] == "index" and _PATH.match(words[1]):
        return _Expr(_split_path(words[1]), tuple(words[2:]))
    supported = '{{.Path}}, {{index .Path "key"}}, {{toLower .Path}}, {{toUpper .Path}}'
    raise TemplateError(f"unsupported template action {{{{{source}}}}}; supported: {supported}")


def _field(value: Any, name: str) -> Any:
    """A struct field as Go templates see it: Docker's JSON says ``Id`` where go-dockerclient says ``ID``."""
    if not isinstance(value, Mapping):
        return None
    if name in value:
        return value[name]
    lowered = name.lower()
    return next((v for k, v in value.items() if isinstance(k, str) and k.lower() == lowered), None)


def _split_path(path: str) -> tuple[str, ...]:
    return tuple(path.strip(".").split("."))


__all__ = ["TagsTemplate", "TemplateError", "dedupe", "split_tags"]
