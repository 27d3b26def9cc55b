"""deploy/observability/: the Prometheus scrape config covers every component at its default port,
and every metric the Grafana dashboard queries is one some component exposes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry, generate_latest

from discovery.client_config import DEFAULT_ADDRESS as REGISTRY_ADDR
from discovery.registrar.config import DEFAULT_METRICS_ADDR as REGISTRAR_METRICS_ADDR
from dnsserver.config import DEFAULT_METRICS_ADDR as DNS_METRICS_ADDR
from mesh.control.client import DEFAULT_CONTROL_ADDR
from sidecar.access_log import AccessLog, AccessLogSettings
from sidecar.metrics import SidecarMetrics
from sidecar.resilience.metrics import ResilienceMetrics
from sidecar.server import DEFAULT_ADMIN_ADDR

REPO = Path(__file__).resolve().parents[2]
OBSERVABILITY = REPO / "deploy" / "observability"
SOURCES = ("discovery", "dnsserver", "mesh", "sidecar")
SUFFIXES = ("_bucket", "_count", "_sum", "_total")
PROMQL_FUNCTIONS = {"sum", "rate", "histogram_quantile", "max", "by", "le"}


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((OBSERVABILITY / "mesh-dashboard.json").read_text())
    return loaded


def expressions(board: dict[str, Any]) -> list[str]:
    exprs = [target["expr"] for panel in board["panels"] for target in panel.get("targets", [])]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            exprs.append(variable["definition"])
    return exprs


def used_metrics(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers outside label matchers and ``by (...)``."""
    without_matchers = re.sub(r"\{[^}]*\}", "", expr)
    without_grouping = re.sub(r"by \([^)]*\)", "", without_matchers)
    without_ranges = re.sub(r"\[[^\]]*\]", "", without_grouping)
    names = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", without_ranges))
    return {name for name in names if name.startswith(("mesh_", "istio_"))}


def family(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def declared_families() -> set[str]:
    """Metric families the components register: names in their source (a grep, as their servers
    are not started here), counters' ``_total`` stripped; the DNS server builds names from PREFIX."""
    found: set[str] = set()
    for package in SOURCES:
        for path in (REPO / package).rglob("*.py"):
            text = path.read_text()
            found.update(family(n) for n in re.findall(r"\"((?:mesh|istio)_[a-z0-9_]+)\"", text))
            prefix = re.search(r"PREFIX: Final = \"(mesh_[a-z]+_)\"", text)
            if prefix:
                found.update(prefix.group(1) + n for n in re.findall(r"PREFIX \+ \"([a-z0-9_]+)\"", text))
    return found


def sidecar_exposition() -> set[str]:
    """What a sidecar's /metrics really shows (its collectors, with one request and an access log)."""
    metrics = SidecarMetrics("productpage")
    metrics.request_stats("outbound", "r", "c").record(200, 0.002)
    metrics.upstream_errors("c").add("reset")  # families without samples print no series
    metrics.listener_stats("outbound")
    metrics.add_collector(AccessLog(AccessLogSettings(1.0), sink=lambda data: None).collect)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics)
    registry.register(ResilienceMetrics())
    text = generate_latest(registry).decode()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}


def test_dashboard_queries_only_metrics_that_exist() -> None:
    board = dashboard()
    exprs = expressions(board)
    assert len(exprs) >= 15
    declared = declared_families()
    exposed = sidecar_exposition()
    used: set[str] = set()
    for expr in exprs:
        names = used_metrics(expr)
        assert names, f"no mesh metric in {expr!r}"
        used |= names
    missing = sorted(name for name in used if family(name) not in declared)
    assert missing == []
    for name in used:
        if name.startswith(("istio_", "mesh_sidecar_")):
            assert name in exposed, name  # the sidecar's own series, checked against a real exposition
    # The Istio-standard panels: rate, error rate and latency quantiles by destination service.
    assert {"istio_requests_total", "istio_request_duration_milliseconds_bucket"} <= used
    text = json.dumps(board)
    assert "histogram_quantile(0.5" in text
    assert "histogram_quantile(0.99" in text
    assert 'response_code=~\\"5..\\"' in text
    for component in ("mesh_registry_", "mesh_dns_", "mesh_control_"):
        assert any(name.startswith(component) for name in used), component


def test_dashboard_is_a_grafana_dashboard() -> None:
    board = dashboard()
    assert board["uid"]
    assert board["title"]
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"])
        if panel["type"] != "row":
            assert panel["datasource"]["type"] == "prometheus"


def test_prometheus_scrapes_every_component_at_its_default_port() -> None:
    config = yaml.safe_load((OBSERVABILITY / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    expected = {
        "mesh-registry": REGISTRY_ADDR,
        "mesh-dns": DNS_METRICS_ADDR,
        "mesh-registrar": REGISTRAR_METRICS_ADDR,
        "mesh-control": DEFAULT_CONTROL_ADDR.removeprefix("http://"),
        "mesh-sidecar": DEFAULT_ADMIN_ADDR,
    }
    assert set(jobs) == set(expected)
    for name, address in expected.items():
        job = jobs[name]
        assert job["metrics_path"] == "/metrics"
        targets = [t for static in job["static_configs"] for t in static["targets"]]
        assert targets == [address], name
