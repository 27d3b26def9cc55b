"""CoreDNS-like Prometheus metrics for the DNS server, prefix ``mesh_dns_``.

Counting costs one integer increment on the hot path (a miss adds one histogram bucket increment
and a float add on the histogram its Series points at: no lookups): requests are counted on small ``Series``
objects (one per proto x type x zone x rcode, created once and kept by cache entries), and the
Prometheus families are built from those plain integers at scrape time by a custom collector.

Series (CoreDNS name in brackets):
- ``mesh_dns_requests_total{proto,type,zone}``            [coredns_dns_requests_total]
- ``mesh_dns_responses_total{rcode,zone}``                [coredns_dns_responses_total]
- ``mesh_dns_request_duration_seconds{type}`` histogram  [coredns_dns_request_duration_seconds]
  Cache hits are answered in microseconds and are not timed (a clock read would cost as much as
  the answer): they are counted in the lowest bucket and add nothing to ``_sum``.
- ``mesh_dns_cache_hits_total{type}``, ``mesh_dns_cache_misses_total``, ``mesh_dns_cache_entries``
- ``mesh_dns_forward_requests_total{to,rcode}``, ``mesh_dns_forward_errors_total{to}``,
  ``mesh_dns_forward_max_concurrent_rejects_total``, ``mesh_dns_forward_cache_entries``
- ``mesh_dns_panics_total``                                [coredns_panics_total]
``type`` buckets uncommon qtypes as ``other``. ``zone`` is the zone we answer for (``cluster.local.``,
``consul.``, ``in-addr.arpa.``, ``ip6.arpa.``), ``.`` for forwarded/refused names, and ``dropped``
for packets rejected before answering (malformed, not a query).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import Final

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

PREFIX: Final = "mesh_dns_"
# CoreDNS: prometheus.ExponentialBuckets(0.00025, 2, 16)
DURATION_BUCKETS: Final = tuple(0.00025 * 2**i for i in range(16))

_TYPES: Final = {
    1: "A",
    2: "NS",
    5: "CNAME",
    6: "SOA",
    12: "PTR",
    15: "MX",
    16: "TXT",
    28: "AAAA",
    33: "SRV",
    35: "NAPTR",
    43: "DS",
    48: "DNSKEY",
    64: "SVCB",
    65: "HTTPS",
    251: "IXFR",
    252: "AXFR",
    255: "ANY",
}
_RCODES: Final = {
    0: "NOERROR",
    1: "FORMERR",
    2: "SERVFAIL",
    3: "NXDOMAIN",
    4: "NOTIMP",
    5: "REFUSED",
    9: "NOTAUTH",
    16: "BADVERS",
}
NO_RESPONSE: Final = -1  # rcode of a series whose packets were dropped


def type_label(qtype: int) -> str:
    return _TYPES.get(qtype, "other")


def rcode_label(rcode: int) -> str:
    return _RCODES.get(rcode, str(rcode))


class _Histogram:
    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(DURATION_BUCKETS) + 1)
        self.total = 0.0


class Series:
    """Counts for one (proto, type, zone, rcode); ``hits`` are cache hits, ``other`` the rest."""

    __slots__ = ("hist", "hits", "other", "proto", "rcode", "type", "zone")

    def __init__(self, proto: str, type_: str, zone: str, rcode: int, hist: _Histogram | None = None) -> None:
        self.hist = hist  # the duration histogram of ``type`` (set by ``DnsMetrics.series``)
        self.proto = proto
        self.type = type_
        self.zone = zone
        self.rcode = rcode
        self.hits = 0
        self.other = 0


class DnsMetrics(Collector):
    """All DNS server metrics; register with ``registry`` (none: kept only in memory, for tests)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self._series: dict[tuple[str, int, str, int], Series] = {}
        self._durations: dict[str, _Histogram] = {}
        self.cache_misses = 0
        self.panics = 0
        self.forward_requests: dict[tuple[str, str], int] = {}
        self.forward_errors: dict[str, int] = {}
        self.forward_rejects = 0
        self.cache_entries: Callable[[], int] = lambda: 0
        self.forward_cache_entries: Callable[[], int] = lambda: 0
        if registry is not None:
            registry.register(self)

    # === recording ===

    def series(self, proto: str, qtype: int, zone: str, rcode: int) -> Series:
        key = (proto, qtype, zone, rcode)
        found = self._series.get(key)
        if found is None:
            # Different qtypes in the "other" bucket share one Series object.
            label = type_label(qtype)
            alias = (proto, -1, zone, rcode) if label == "other" else key
            found = self._series.get(alias)
            if found is None:
                hist = self._durations.get(label)
                if hist is None:
                    hist = self._durations[label] = _Histogram()
                found = Series(proto, label, zone, rcode, hist)
                self._series[alias] = found
            self._series[key] = found
        return found

    def observe(self, series: Series, seconds: float) -> None:
        """One non-cache-hit request answered (or dropped) after ``seconds``."""
        series.other += 1
        hist = series.hist
        if hist is None:  # a Series not made by ``series`` (tests)
            hist = series.hist = self._durations.setdefault(series.type, _Histogram())
        hist.counts[bisect_left(DURATION_BUCKETS, seconds)] += 1
        hist.total += seconds

    def forward_result(self, to: str, rcode: int) -> None:
        key = (to, rcode_label(rcode))
        self.forward_requests[key] = self.forward_requests.get(key, 0) + 1

    def forward_error(self, to: str) -> None:
        self.forward_errors[to] = self.forward_errors.get(to, 0) + 1

    # === reading ===

    def requests_total(self) -> int:
        return sum(s.hits + s.other for s in set(self._series.values()))

    def cache_hits_total(self) -> int:
        return sum(s.hits for s in set(self._series.values()))

    def responses(self) -> dict[tuple[str, str], int]:
        """(rcode label, zone) → responses; convenient for tests."""
        out: dict[tuple[str, str], int] = {}
        for s in set(self._series.values()):
            if s.rcode != NO_RESPONSE and s.hits + s.other:
                key = (rcode_label(s.rcode), s.zone)
                out[key] = out.get(key, 0) + s.hits + s.other
        return out

    def describe(self) -> list[Metric]:
        return []  # names are fixed; skip the duplicate check's collect() call

    def collect(self) -> Iterator[Metric]:
        series = set(self._series.values())
        requests: dict[tuple[str, str, str], int] = {}
        responses: dict[tuple[str, str], int] = {}
        hits: dict[str, int] = {}
        for s in series:
            n = s.hits + s.other
            if not n:
                continue
            rkey = (s.proto, s.type, s.zone)
            requests[rkey] = requests.get(rkey, 0) + n
            if s.rcode != NO_RESPONSE:
                skey = (rcode_label(s.rcode), s.zone)
                responses[skey] = responses.get(skey, 0) + n
            if s.hits:
                hits[s.type] = hits.get(s.type, 0) + s.hits

        fam = CounterMetricFamily(PREFIX + "requests", "DNS requests.", labels=["proto", "type", "zone"])
        for (proto, type_, zone), n in sorted(requests.items()):
            fam.add_metric([proto, type_, zone], n)
        yield fam
        fam = CounterMetricFamily(PREFIX + "responses", "DNS responses by rcode.", labels=["rcode", "zone"])
        for (rcode, zone), n in sorted(responses.items()):
            fam.add_metric([rcode, zone], n)
        yield fam

        hist = HistogramMetricFamily(
            PREFIX + "request_duration_seconds",
            "Time to answer a request (cache hits: lowest bucket).",
            labels=["type"],
        )
        for type_ in sorted(set(self._durations) | set(hits)):
            h = self._durations.get(type_) or _Histogram()
            if not hits.get(type_) and not any(h.counts):
                continue  # a series was made but nothing observed yet
            cumulative = hits.get(type_, 0)
            buckets = []
            for bound, count in zip(DURATION_BUCKETS, h.counts, strict=False):
                cumulative += count
                buckets.append((repr(bound), cumulative))
            cumulative += h.counts[-1]
            buckets.append(("+Inf", cumulative))
            hist.add_metric([type_], buckets, h.total)
        yield hist

        fam = CounterMetricFamily(PREFIX + "cache_hits", "Answer cache hits.", labels=["type"])
        for type_, n in sorted(hits.items()):
            fam.add_metric([type_], n)
        yield fam
        yield CounterMetricFamily(PREFIX + "cache_misses", "Answer cache misses.", value=self.cache_misses)
        yield GaugeMetricFamily(PREFIX + "cache_entries", "Answers in the cache.", value=self.cache_entries())

        fam = CounterMetricFamily(PREFIX + "forward_requests", "Upstream exchanges.", labels=["to", "rcode"])
        for (to, rcode), n in sorted(self.forward_requests.items()):
            fam.add_metric([to, rcode], n)
        yield fam
        fam = CounterMetricFamily(PREFIX + "forward_errors", "Upstream timeouts and errors.", labels=["to"])
        for to, n in sorted(self.forward_errors.items()):
            fam.add_metric([to], n)
        yield fam
        yield CounterMetricFamily(
            PREFIX + "forward_max_concurrent_rejects",
            "Queries refused because max_concurrent forwards were in flight.",
            value=self.forward_rejects,
        )
        yield GaugeMetricFamily(
            PREFIX + "forward_cache_entries", "Upstream answers in the cache.", value=self.forward_cache_entries()
        )
        yield CounterMetricFamily(PREFIX + "panics", "Internal errors answered SERVFAIL.", value=self.panics)
