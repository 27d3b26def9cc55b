"""Label selectors with Kubernetes semantics: parse, print, match. Pure (no I/O).

Two input forms, as Kubernetes accepts them:

- the string form of ``kubectl -l``: ``app=web,tier!=db,env in (prod,staging),release notin (canary),team,!legacy``
  (``=`` and ``==`` are the same; requirements are ANDed);
- the object form of ``spec.selector``: ``{"matchLabels": {...}, "matchExpressions": [{"key", "operator",
  "values"}]}`` with operators ``In``, ``NotIn``, ``Exists``, ``DoesNotExist``; both parts are ANDed.

Matching follows Kubernetes: ``!=`` and ``notin`` also match objects that lack the key; ``in`` and ``=``
need it. The empty selector matches everything. Internally ``key=v`` is ``In`` with one value and
``key!=v`` is ``NotIn`` with one value, so both forms share one model and ``str()`` prints the
canonical string form (requirements sorted by key, values sorted) that ``parse_selector`` reads back.
Errors are ``SelectorError`` naming the character position (string form) or the field path (object form).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

Operator = Literal["In", "NotIn", "Exists", "DoesNotExist"]
OPERATORS: Final[tuple[Operator, ...]] = ("In", "NotIn", "Exists", "DoesNotExist")
_OPERATOR_NAMES: Final[dict[Any, Operator]] = {name: name for name in OPERATORS}
_NEGATION: Final[dict[Operator, Operator]] = {
    "In": "NotIn",
    "NotIn": "In",
    "Exists": "DoesNotExist",
    "DoesNotExist": "Exists",
}

# Kubernetes' qualified name: an optional DNS-subdomain prefix and "/", then a name of at most 63 characters.
_NAME: Final = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_DNS_SUBDOMAIN: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


class SelectorError(ValueError):
    """A selector that cannot be parsed; ``position`` (string form) or ``path`` (object form) says where."""

    def __init__(self, message: str, *, position: int | None = None, path: str = "") -> None:
        where = f" at position {position}" if position is not None else f" at {path}" if path else ""
        super().__init__(f"{message}{where}")
        self.reason = message
        self.position = position
        self.path = path


def key_problem(key: str) -> str | None:
    """Why ``key`` is not a valid label key, or None."""
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN.fullmatch(prefix)):
        return f"label key {key!r}: the prefix must be a lower-case DNS subdomain of at most 253 characters"
    if not name:
        return f"label key {key!r}: the name part must not be empty"
    if len(name) > 63 or not _NAME.fullmatch(name):
        return (
            f"label key {key!r}: the name must be at most 63 characters of alphanumerics, '-', '_' or '.', "
            "starting and ending with an alphanumeric"
        )
    return None


def value_problem(value: str) -> str | None:
    """Why ``value`` is not a valid label value (the empty value is valid), or None."""
    if value and (len(value) > 63 or not _NAME.fullmatch(value)):
        return (
            f"label value {value!r}: must be empty or at most 63 characters of alphanumerics, '-', '_' or '.', "
            "starting and ending with an alphanumeric"
        )
    return None


@dataclass(frozen=True, slots=True)
class Requirement:
    """One ANDed term: ``key`` with an operator and (for In/NotIn, at least one) sorted unique values."""

    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "Exists":
            return self.key in labels
        if self.operator == "DoesNotExist":
            return self.key not in labels
        present = self.key in labels and labels[self.key] in self.values
        return present if self.operator == "In" else not present

    def negated(self) -> Requirement:
        """The requirement that matches exactly the label sets this one does not."""
        return Requirement(self.key, _NEGATION[self.operator], self.values)

    def __str__(self) -> str:
        if self.operator == "Exists":
            return self.key
        if self.operator == "DoesNotExist":
            return f"!{self.key}"
        if len(self.values) == 1:
            return f"{self.key}{'=' if self.operator == 'In' else '!='}{self.values[0]}"
        return f"{self.key} {'in' if self.operator == 'In' else 'notin'} ({','.join(self.values)})"

    def to_expression(self) -> dict[str, Any]:
        """The ``matchExpressions`` item for this requirement."""
        item: dict[str, Any] = {"key": self.key, "operator": self.operator}
        if self.values:
            item["values"] = list(self.values)
        return item


def requirement(key: str, operator: Operator, values: Iterable[str] = ()) -> Requirement:
    """A validated requirement (values sorted and de-duplicated); raises SelectorError."""
    problem = key_problem(key)
    if problem:
        raise SelectorError(problem)
    unique = tuple(sorted(set(values)))
    if operator in ("In", "NotIn") and not unique:
        raise SelectorError(f"operator {operator} on key {key!r} needs at least one value")
    if operator in ("Exists", "DoesNotExist") and unique:
        raise SelectorError(f"operator {operator} on key {key!r} takes no values")
    for value in unique:
        problem = value_problem(value)
        if problem:
            raise SelectorError(problem)
    return Requirement(key, operator, unique)


@dataclass(frozen=True, slots=True)
class Selector:
    """Requirements ANDed; kept sorted so that equal selectors compare and print equal."""

    requirements: tuple[Requirement, ...] = ()

    @classmethod
    def of(cls, requirements: Iterable[Requirement]) -> Selector:
        unique = set(requirements)
        return cls(tuple(sorted(unique, key=lambda r: (r.key, OPERATORS.index(r.operator), r.values))))

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)

    @property
    def empty(self) -> bool:
        """The empty selector matches everything (Kubernetes' ``labels.Everything()``)."""
        return not self.requirements

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)

    def to_object(self) -> dict[str, Any]:
        """The ``matchLabels``/``matchExpressions`` form; ``key=value`` goes to matchLabels when its key is free."""
        singles = [r for r in self.requirements if r.operator == "In" and len(r.values) == 1]
        counts: dict[str, int] = {}
        for r in singles:
            counts[r.key] = counts.get(r.key, 0) + 1
        labels = {r.key: r.values[0] for r in singles if counts[r.key] == 1}
        expressions = [
            r.to_expression()
            for r in self.requirements
            if not (r.operator == "In" and len(r.values) == 1 and r.key in labels)
        ]
        result: dict[str, Any] = {}
        if labels:
            result["matchLabels"] = labels
        if expressions:
            result["matchExpressions"] = expressions
        return result


# === the string form ===

_TOKEN: Final = re.compile(r"(?P<op>==|!=|=|\(|\)|,|!)|(?P<word>[^\s=!(),]+)")


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "word", an operator/punctuation literal, or "end"
    text: str
    position: int


def _tokens(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    index = 0
    while index < len(text):
        if text[index].isspace():
            index += 1
            continue
        match = _TOKEN.match(text, index)
        if match is None:  # cannot happen: every other character starts an operator or a word
            raise SelectorError(f"unexpected character {text[index]!r}", position=index)
        if match.group("op"):
            tokens.append(_Token(match.group("op"), match.group("op"), index))
        else:
            tokens.append(_Token("word", match.group("word"), index))
        index = match.end()
    tokens.append(_Token("end", "", len(text)))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.at = 0

    def peek(self) -> _Token:
        return self.tokens[self.at]

    def take(self) -> _Token:
        token = self.tokens[self.at]
        self.at += 1
        return token

    def expect(self, kind: str, what: str) -> _Token:
        token = self.take()
        if token.kind != kind:
            found = "the end" if token.kind == "end" else repr(token.text)
            raise SelectorError(f"expected {what}, found {found}", position=token.position)
        return token

    def selector(self) -> Selector:
        if self.peek().kind == "end":
            return Selector()
        requirements = [self.requirement()]
        while self.peek().kind == ",":
            self.take()
            requirements.append(self.requirement())
        token = self.peek()
        if token.kind != "end":
            raise SelectorError(f"expected ',' or the end, found {token.text!r}", position=token.position)
        return Selector.of(requirements)

    def requirement(self) -> Requirement:
        if self.peek().kind == "!":
            self.take()
            key = self.key()
            return self.build(key, "DoesNotExist", (), key.position)
        key = self.key()
        token = self.peek()
        if token.kind in (",", "end"):
            return self.build(key, "Exists", (), key.position)
        self.take()
        if token.kind in ("=", "=="):
            return self.build(key, "In", (self.value(),), key.position)
        if token.kind == "!=":
            return self.build(key, "NotIn", (self.value(),), key.position)
        if token.kind == "word" and token.text in ("in", "notin"):
            return self.build(key, "In" if token.text == "in" else "NotIn", self.value_set(), key.position)
        raise SelectorError(
            f"expected an operator (=, ==, !=, in, notin), ',' or the end after key {key.text!r}, found {token.text!r}",
            position=token.position,
        )

    def key(self) -> _Token:
        token = self.expect("word", "a label key")
        problem = key_problem(token.text)
        if problem:
            raise SelectorError(problem, position=token.position)
        return token

    def value(self) -> str:
        token = self.peek()
        if token.kind in (",", "end"):
            return ""  # `key=` selects the empty value, as in Kubernetes
        token = self.expect("word", "a label value")
        problem = value_problem(token.text)
        if problem:
            raise SelectorError(problem, position=token.position)
        return token.text

    def value_set(self) -> tuple[str, ...]:
        opening = self.expect("(", "'(' to open the value set")
        values: list[str] = []
        want_value = True  # at the start or after a comma
        while True:
            token = self.take()
            if token.kind == "word" and want_value:
                problem = value_problem(token.text)
                if problem:
                    raise SelectorError(problem, position=token.position)
                values.append(token.text)
                want_value = False
            elif token.kind in (",", ")"):
                if want_value and (token.kind == "," or values):
                    values.append("")  # `in (a,,b)` and `in (a,)` hold the empty value, as Kubernetes reads them
                if token.kind == ")":
                    break
                want_value = True
            else:
                found = "the end" if token.kind == "end" else repr(token.text)
                raise SelectorError(
                    f"expected a value, ',' or ')' in the value set, found {found}", position=token.position
                )
        if not values:
            raise SelectorError("the value set of in/notin must not be empty", position=opening.position)
        return tuple(values)

    @staticmethod
    def build(key: _Token, operator: Operator, values: tuple[str, ...], position: int) -> Requirement:
        try:
            return requirement(key.text, operator, values)
        except SelectorError as exc:
            raise SelectorError(exc.reason, position=position) from None


def parse_selector(text: str) -> Selector:
    """Parse the string form (``kubectl -l``); the empty string selects everything."""
    return _Parser(text).selector()


# === the object form ===


def selector_from_object(data: Any, path: str = "selector") -> Selector:
    """Parse ``{"matchLabels": {...}, "matchExpressions": [...]}``; errors name the field path."""
    if data is None:
        return Selector()
    if not isinstance(data, Mapping):
        raise SelectorError(
            f"expected an object with matchLabels/matchExpressions, got {type(data).__name__}", path=path
        )
    unknown = sorted(set(data) - {"matchLabels", "matchExpressions"})
    if unknown:
        raise SelectorError(f"unknown field {unknown[0]!r} (expected matchLabels, matchExpressions)", path=path)
    requirements: list[Requirement] = []
    labels = data.get("matchLabels")
    labels = {} if labels is None else labels
    if not isinstance(labels, Mapping):
        raise SelectorError("expected an object of label: value", path=f"{path}.matchLabels")
    for key, value in labels.items():
        field = f"{path}.matchLabels.{key}"
        if not isinstance(key, str) or not isinstance(value, str):
            raise SelectorError("label keys and values must be strings", path=field)
        requirements.append(_checked(key, "In", (value,), field))
    expressions = data.get("matchExpressions")
    expressions = [] if expressions is None else expressions
    if not isinstance(expressions, list):
        raise SelectorError("expected a list of {key, operator, values}", path=f"{path}.matchExpressions")
    for index, item in enumerate(expressions):
        requirements.append(_expression(item, f"{path}.matchExpressions[{index}]"))
    return Selector.of(requirements)


def _expression(item: Any, path: str) -> Requirement:
    if not isinstance(item, Mapping):
        raise SelectorError("expected an object {key, operator, values}", path=path)
    unknown = sorted(set(item) - {"key", "operator", "values"})
    if unknown:
        raise SelectorError(f"unknown field {unknown[0]!r} (expected key, operator, values)", path=path)
    key = item.get("key")
    if not isinstance(key, str) or not key:
        raise SelectorError("a non-empty string is required", path=f"{path}.key")
    problem = key_problem(key)
    if problem:
        raise SelectorError(problem, path=f"{path}.key")
    operator = _OPERATOR_NAMES.get(item.get("operator"))
    if operator is None:
        raise SelectorError(
            f"expected one of {', '.join(OPERATORS)}, got {item.get('operator')!r}", path=f"{path}.operator"
        )
    values = item.get("values")
    values = [] if values is None else values
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise SelectorError("expected a list of strings", path=f"{path}.values")
    return _checked(key, operator, values, f"{path}.values")


def _checked(key: str, operator: Operator, values: Iterable[str], path: str) -> Requirement:
    try:
        return requirement(key, operator, values)
    except SelectorError as exc:
        raise SelectorError(exc.reason, path=path) from None
