"""One scrape of a Prometheus ``/metrics`` page, as plain data (parsed by prometheus-client's parser).

A ``Scrape`` keeps the samples of the families asked for (Istio's request metrics by default), by
sample name (``istio_requests_total``, ``istio_request_duration_milliseconds_bucket`` ...) and label
set, with the scraper's clock reading. Nothing here touches a socket.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from prometheus_client.parser import text_string_to_metric_families

Labels = tuple[tuple[str, str], ...]  # sorted by label name: hashable, order-free

ISTIO_REQUESTS = "istio_requests_total"
ISTIO_DURATION = "istio_request_duration_milliseconds"
ISTIO_FAMILIES: frozenset[str] = frozenset({"istio_requests", ISTIO_DURATION})


class ScrapeError(Exception):
    """A scrape that gave no usable samples; ``reason`` is a metric label (timeout, connect, http, parse)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class Scrape:
    at: float  # the scraper's clock (seconds), for rates
    samples: Mapping[str, Mapping[Labels, float]] = field(default_factory=lambda: MappingProxyType({}))

    def series(self, sample: str) -> Mapping[Labels, float]:
        return self.samples.get(sample, _EMPTY)


_EMPTY: Mapping[Labels, float] = MappingProxyType({})


def labels_of(mapping: Mapping[str, str]) -> Labels:
    return tuple(sorted(mapping.items()))


def label(labels: Labels, name: str, default: str = "") -> str:
    for key, value in labels:
        if key == name:
            return value
    return default


def _wanted(sample: str, names: Collection[str] | None) -> bool:
    if names is None:
        return True
    return any(sample == name or sample.startswith(name + "_") for name in names)


def _lines_of(text: str, names: Collection[str]) -> str:
    """Only the lines (samples, ``# HELP``/``# TYPE``) of the families wanted: a sidecar's page is mostly
    other series, and prometheus-client's parser costs tens of µs per line, so skipping them first halves
    the control plane's CPU per scrape. The kept lines are parsed by prometheus-client, unchanged."""
    prefixes = tuple(names)
    comments = tuple(f"# {kind} {name}" for name in prefixes for kind in ("HELP", "TYPE"))
    kept = [line for line in text.splitlines() if line.startswith(prefixes) or line.startswith(comments)]
    return "\n".join(kept) + "\n"


def parse_exposition(text: str, at: float, names: Collection[str] | None = ISTIO_FAMILIES) -> Scrape:
    """The samples of the families in ``names`` (None: all); ``ScrapeError("parse")`` for malformed text."""
    samples: dict[str, dict[Labels, float]] = {}
    if names is not None:
        text = _lines_of(text, names)
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if _wanted(sample.name, names):
                    samples.setdefault(sample.name, {})[labels_of(sample.labels)] = float(sample.value)
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        raise ScrapeError("parse", f"not Prometheus text format: {exc}") from exc
    return Scrape(at, MappingProxyType({name: MappingProxyType(series) for name, series in samples.items()}))


__all__ = [
    "ISTIO_DURATION",
    "ISTIO_FAMILIES",
    "ISTIO_REQUESTS",
    "Labels",
    "Scrape",
    "ScrapeError",
    "label",
    "labels_of",
    "parse_exposition",
]
