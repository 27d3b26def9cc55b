"""Report for `bench/run`: markdown tables and PNG plots from each benchmark's final JSON line.

Pure functions over parsed JSON (no benchmark is run here), so the tables are testable from recorded
output. matplotlib is imported only inside :func:`write_plots`; nothing else depends on it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Targets as the scripts define them (bench/*_bench.py TARGET_*); shown next to each figure.
SIDECAR_CPU_RATIO = 0.6
SIDECAR_ADDED_P99_MS = 0.25
SIDECAR_CORE_SHARE = 0.05
SIDECAR_RSS_MB = 25.0
SIDECAR_L4_RATIO = 0.6
DNS_CACHED_RATIO = 0.9
DNS_UNCACHED_QPS = 40_000.0
REGISTRY_RATE = 2000.0
REGISTRY_RSS_MB = 1024.0
REGISTRY_FANOUT_P99_MS = 50.0
REGISTRAR_P99_MS = 50.0
CONTROL_P99_MS = 200.0
RESILIENCE_ERROR_PCT = 0.1
LB_PICK_NS_AT_100 = 2000.0

ORDER = ("registry", "dns", "registrar", "sidecar", "gateway", "resilience", "control", "lb", "route")
TITLES = {
    "registry": "Registry (`bench/registry_bench.py`; no peer: no Consul binary here)",
    "dns": "DNS (`bench/dns_bench.py`, peer dnsmasq)",
    "registrar": "Registrar (`bench/registrar_bench.py`; no peer: Registrator not available here)",
    "sidecar": "Sidecar (`bench/sidecar_bench.py`, peer HAProxy)",
    "gateway": "Ingress gateway, HTTPS (`bench/gateway_bench.py`, peer HAProxy terminating TLS)",
    "resilience": "Resilience (`bench/resilience_bench.py`, peer HAProxy)",
    "control": "Control plane (`bench/control_bench.py`)",
    "lb": "Load-balancer picks (`bench/lb_bench.py`, peer `random.choice`)",
    "route": "Route selection (`bench/route_bench.py`, peer: naive scan)",
}
HEADER = ("what", "mesh", "peer / reference", "target", "met")
NONE = "-"


@dataclass(frozen=True)
class Row:
    what: str
    ours: str
    peer: str = NONE
    target: str = NONE
    met: bool | None = None

    def cells(self) -> tuple[str, ...]:
        met = NONE if self.met is None else ("yes" if self.met else "**no**")
        return (self.what, self.ours, self.peer, self.target, met)


@dataclass(frozen=True)
class BenchOutcome:
    """One benchmark as `bench/run` saw it: its figures, or why there are none."""

    name: str
    figures: Mapping[str, Any] | None
    returncode: int = 0
    tail: str = ""
    wall_s: float = 0.0
    load_before: Sequence[float] = field(default_factory=tuple)
    load_after: Sequence[float] = field(default_factory=tuple)

    @property
    def failed(self) -> bool:
        return self.returncode != 0 or self.figures is None


def last_json_line(stdout: str) -> dict[str, Any] | None:
    """The last non-empty stdout line parsed as a JSON object, or None when it is not one."""
    for line in reversed(stdout.splitlines()):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None
    return None


def get(data: Any, *path: str | int) -> Any:
    """``data[path[0]][path[1]]...`` or None when any step is missing (older scripts lack some figures)."""
    for key in path:
        in_mapping = isinstance(data, Mapping) and key in data
        in_list = isinstance(data, list) and isinstance(key, int) and -len(data) <= key < len(data)
        if not (in_mapping or in_list):
            return None
        data = data[key]
    return data


def num(data: Any, *path: str | int) -> float | None:
    value = get(data, *path)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def fmt(value: float | None, spec: str = ".1f", unit: str = "") -> str:
    return NONE if value is None else f"{value:{spec}}{unit}"


def pair(a: float | None, b: float | None, spec: str = ".2f", unit: str = " ms") -> str:
    return f"{fmt(a, spec)} / {fmt(b, spec)}{unit}"


def at_most(value: float | None, limit: float) -> bool | None:
    return None if value is None else value <= limit


def at_least(value: float | None, limit: float) -> bool | None:
    return None if value is None else value >= limit


def registry_rows(f: Mapping[str, Any]) -> list[Row]:
    rate = num(f, "registration", "rate")
    rss = [num(f, "scale", "rss_loaded_mb"), num(f, "scale", "rss_peak_mb")]
    fans = get(f, "fanout") or []
    round_p99 = sorted(get(fans, 0, "round_p99_ms") or [])
    fan_p99 = float(round_p99[len(round_p99) // 2]) if round_p99 else None
    rss_max = max((v for v in rss if v is not None), default=None)
    return [
        Row(
            "registrations/s over HTTP",
            f"{fmt(rate, ',.0f')}; {fmt(num(f, 'registration', 'cpu_s_per_1000'), '.2f')} CPU-s per 1000",
            "no Consul binary",
            f"≥ {REGISTRY_RATE:,.0f} on one core",
            at_least(rate, REGISTRY_RATE),
        ),
        Row("RSS loaded / peak", pair(rss[0], rss[1], ".0f", " MB"), NONE, "< 1 GB", at_most(rss_max, REGISTRY_RSS_MB)),
        Row(
            "fan-out to all watchers, p99 per write (median of rounds; first client kind)",
            fmt(fan_p99, ".1f", " ms"),
            NONE,
            f"p99 ≤ {REGISTRY_FANOUT_P99_MS:.0f} ms",
            at_most(fan_p99, REGISTRY_FANOUT_P99_MS),
        ),
    ]


def dns_rows(f: Mapping[str, Any]) -> list[Row]:
    ratio = num(f, "cached_qps", "ratio")
    uncached = num(f, "uncached_qps", "mesh")
    mix = num(f, "uncached_mix_qps", "mesh")
    return [
        Row(
            "cached QPS (ratio by QPS; by CPU per query)",
            f"{fmt(num(f, 'cached_qps', 'mesh'), ',.0f')} ({fmt(ratio, '.2f')}x; "
            f"{fmt(num(f, 'cached_qps', 'cpu_per_query_ratio'), '.2f')}x)",
            f"dnsmasq {fmt(num(f, 'cached_qps', 'dnsmasq'), ',.0f')}",
            f"≥ {DNS_CACHED_RATIO}x dnsmasq",
            at_least(ratio, DNS_CACHED_RATIO),
        ),
        Row(
            "uncached QPS, every answer built",
            fmt(uncached, ",.0f"),
            f"dnsmasq {fmt(num(f, 'uncached_qps', 'dnsmasq_same_names'), ',.0f')} (same names, its cache)",
            f"≥ {DNS_UNCACHED_QPS:,.0f}",
            at_least(uncached, DNS_UNCACHED_QPS),
        ),
        Row("uncached mix QPS", fmt(mix, ",.0f"), NONE, f"≥ {DNS_UNCACHED_QPS:,.0f}", at_least(mix, DNS_UNCACHED_QPS)),
        Row(
            "memory: synced / with a full answer cache",
            pair(num(f, "memory_mb", "mesh_rss_synced"), num(f, "memory_mb", "mesh_rss_after_load"), ".0f", " MB"),
            f"dnsmasq {fmt(num(f, 'memory_mb', 'dnsmasq_rss'), '.1f', ' MB')}",
        ),
    ]


def registrar_rows(f: Mapping[str, Any]) -> list[Row]:
    rows = []
    for phase in get(f, "phases") or []:
        p99 = num(phase, "register_ms", "p99")
        rows.append(
            Row(
                f"start event → visible p50 / p99, {get(phase, 'concurrency')} at a time, "
                f"{get(phase, 'host_ports')} host ports",
                pair(num(phase, "register_ms", "p50"), p99, ".1f"),
                "no Registrator here",
                f"p99 ≤ {REGISTRAR_P99_MS:.0f} ms",
                at_most(p99, REGISTRAR_P99_MS),
            )
        )
    return rows


def percentiles(f: Mapping[str, Any], path: str) -> str:
    return pair(num(f, "latency", path, "p50_ms"), num(f, "latency", path, "p99_ms"), ".3f")


def sidecar_rows(f: Mapping[str, Any]) -> list[Row]:
    rows = []
    if "cpu" in f:
        ratio = num(f, "cpu", "ratio")
        rows.append(
            Row(
                "L7 CPU µs/request (HAProxy / sidecar ratio)",
                f"{fmt(num(f, 'cpu', 'us_per_req', 'sidecar'))} ({fmt(ratio, '.2f')})",
                f"HAProxy {fmt(num(f, 'cpu', 'us_per_req', 'haproxy'))}, bare "
                f"{fmt(num(f, 'cpu', 'us_per_req', 'bare'))}",
                f"ratio ≥ {SIDECAR_CPU_RATIO}",
                at_least(ratio, SIDECAR_CPU_RATIO),
            )
        )
    if "latency" in f:
        added = num(f, "latency", "added_p99_ms")
        rows.append(
            Row(
                "2 hops at 1,000 rps p50 / p99 (added p99)",
                f"{percentiles(f, 'two_hops')} (+{fmt(added, '.3f')})",
                f"HAProxy {percentiles(f, 'haproxy_two_hops')}; direct {percentiles(f, 'direct')}",
                f"added p99 ≤ {SIDECAR_ADDED_P99_MS} ms",
                at_most(added, SIDECAR_ADDED_P99_MS),
            )
        )
        share = num(f, "latency", "core_share")
        rows.append(
            Row(
                "CPU share of one sidecar at 1,000 rps",
                fmt(share, ".3f", " core"),
                f"HAProxy {fmt(num(f, 'latency', 'haproxy_core_share'), '.3f')}",
                f"≤ {SIDECAR_CORE_SHARE}",
                at_most(share, SIDECAR_CORE_SHARE),
            )
        )
        rss = num(f, "latency", "rss_mb")
        rows.append(
            Row(
                "RSS of one sidecar",
                fmt(rss, ".1f", " MB"),
                NONE,
                f"≤ {SIDECAR_RSS_MB:.0f} MB",
                at_most(rss, SIDECAR_RSS_MB),
            )
        )
    if "l4" in f:
        ratio = num(f, "l4", "ratio")
        rows.append(
            Row(
                "L4 throughput Gbit/s (ratio)",
                f"{fmt(num(f, 'l4', 'gbps', 'sidecar'), '.2f')} ({fmt(ratio, '.2f')})",
                f"HAProxy {fmt(num(f, 'l4', 'gbps', 'haproxy'), '.2f')}",
                f"ratio ≥ {SIDECAR_L4_RATIO}",
                at_least(ratio, SIDECAR_L4_RATIO),
            )
        )
    if "swaps" in f:
        failed = num(f, "swaps", "failed")
        rows.append(
            Row(
                f"{fmt(num(f, 'swaps', 'swaps'), '.0f')} hot swaps under load",
                f"{fmt(failed, '.0f')} failed of {fmt(num(f, 'swaps', 'requests'), '.0f')}",
                NONE,
                "0 failed",
                None if failed is None else failed == 0,
            )
        )
    return rows


def resilience_rows(f: Mapping[str, Any]) -> list[Row]:
    summary = get(f, "summary") or {}
    peers = [name for name in summary if name != "sidecar"]
    peer = peers[0] if peers else None

    def peer_cell(key: str, spec: str, unit: str) -> str:
        return NONE if peer is None else f"{peer} {fmt(num(summary, peer, key), spec, unit)}"

    errors = num(summary, "sidecar", "fault_error_rate_pct")
    return [
        Row(
            "errors in the fault window after a backend is killed",
            fmt(errors, ".3f", " %"),
            peer_cell("fault_error_rate_pct", ".3f", " %"),
            f"≤ {RESILIENCE_ERROR_PCT} %",
            at_most(errors, RESILIENCE_ERROR_PCT),
        ),
        Row(
            "p99 during the fault",
            fmt(num(summary, "sidecar", "p99_fault_ms"), ".2f", " ms"),
            peer_cell("p99_fault_ms", ".2f", " ms"),
        ),
        Row("kill → eject", fmt(num(summary, "sidecar", "eject_s"), ".2f", " s"), peer_cell("eject_s", ".2f", " s")),
    ]


def control_rows(f: Mapping[str, Any]) -> list[Row]:
    p99 = num(f, "all_acked_p99_ms")
    return [
        Row(
            f"apply → all {fmt(num(f, 'sidecars'), '.0f')} sidecars ACK, p50 / p99",
            pair(num(f, "all_acked_p50_ms"), p99, ".1f"),
            "no peer (istiod not available here)",
            f"p99 ≤ {CONTROL_P99_MS:.0f} ms",
            at_most(p99, CONTROL_P99_MS),
        ),
        Row("apply → one sidecar's ACK, p50 / p99", pair(num(f, "sidecar_ack_p50_ms"), num(f, "sidecar_ack_p99_ms"))),
        Row("control-plane CPU per apply", fmt(num(f, "control_cpu_ms_per_apply"), ".1f", " ms")),
    ]


def gateway_rows(f: Mapping[str, Any]) -> list[Row]:
    ratio = num(f, "ratio")
    return [
        Row(
            "HTTPS CPU µs/request (HAProxy / gateway ratio)",
            f"{fmt(num(f, 'us_per_req', 'gateway https'))} ({fmt(ratio, '.2f')})",
            f"HAProxy {fmt(num(f, 'us_per_req', 'haproxy https'))}",
        ),
        Row(
            "HTTPS rps, one core each",
            fmt(num(f, "rps", "gateway https"), ",.0f"),
            f"HAProxy {fmt(num(f, 'rps', 'haproxy https'), ',.0f')}",
        ),
        Row("plain HTTP through the same gateway, CPU µs/request", fmt(num(f, "us_per_req", "gateway http"))),
    ]


def lb_rows(f: Mapping[str, Any]) -> list[Row]:
    peer = num(f, "peer", "pick_ns_100")
    target = num(f, "target_ns_at_100") or LB_PICK_NS_AT_100
    rows = []
    for kind, figures in (get(f, "policies") or {}).items():
        at_100 = num(figures, "pick_ns_100")
        rows.append(
            Row(
                f"{kind}: pick ns at N=100 (retry pick)",
                f"{fmt(at_100, '.0f')} ({fmt(num(figures, 'retry_ns_100'), '.0f')})",
                f"random.choice {fmt(peer, '.0f')}",
                f"< {target:.0f} ns",
                None if at_100 is None else at_100 < target,
            )
        )
    return rows


def route_rows(f: Mapping[str, Any]) -> list[Row]:
    rows = [
        Row(
            f"{case}: µs per select_route",
            fmt(num(figures, "ours_us"), ".2f"),
            f"naive scan {fmt(num(figures, 'naive_us'), '.1f')}",
        )
        for case, figures in (get(f, "cases") or {}).items()
    ]
    rows.append(Row("mean over cases, µs", fmt(num(f, "mean_us"), ".2f")))
    return rows


ROWS = {
    "registry": registry_rows,
    "dns": dns_rows,
    "registrar": registrar_rows,
    "sidecar": sidecar_rows,
    "gateway": gateway_rows,
    "resilience": resilience_rows,
    "control": control_rows,
    "lb": lb_rows,
    "route": route_rows,
}


def rows_for(name: str, figures: Mapping[str, Any]) -> list[Row]:
    return ROWS[name](figures)


def markdown_table(rows: Sequence[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row.cells()) + " |" for row in rows]
    return "\n".join(lines)


def section(outcome: BenchOutcome) -> str:
    title = TITLES.get(outcome.name, outcome.name)
    head = [f"## {title}", ""]
    load = f"load average before {list(outcome.load_before)}, after {list(outcome.load_after)}"
    head.append(f"Ran {outcome.wall_s:.0f} s, exit status {outcome.returncode}; {load}.")
    head.append("")
    if outcome.failed:
        why = "no JSON figures on its last line" if outcome.figures is None else "non-zero exit status"
        tail = outcome.tail.rstrip() or "(no output)"
        return "\n".join([*head, f"**FAILED** ({why}). Tail of its output:", "", "```", tail, "```", ""])
    assert outcome.figures is not None
    return "\n".join([*head, markdown_table(rows_for(outcome.name, outcome.figures)), ""])


README_BEGIN = "<!-- bench/run report: begin (generated by `bench/run --readme README.md`) -->"
README_END = "<!-- bench/run report: end -->"


def readme_block(machine: Mapping[str, Any], outcomes: Sequence[BenchOutcome], report_path: str) -> str:
    """The README's generated performance tables: every benchmark of one `bench/run`, as in its report."""
    kind = "quick run" if machine.get("quick") else "full run"
    lines = [
        README_BEGIN,
        f"Latest `bench/run` ({kind}, {machine.get('date', NONE)}, commit {machine.get('commit', NONE)}, "
        f"{machine.get('nproc', NONE)} CPUs); report, plots and raw figures: `{report_path}`.",
        "",
    ]
    for outcome in outcomes:
        lines += [f"#### {TITLES.get(outcome.name, outcome.name)}", ""]
        if outcome.failed or outcome.figures is None:
            lines += [f"Failed in this run (exit status {outcome.returncode}); see the report.", ""]
        else:
            lines += [markdown_table(rows_for(outcome.name, outcome.figures)), ""]
    lines.append(README_END)
    return "\n".join(lines)


def splice_readme(text: str, block: str) -> str:
    """``text`` with the part between the README markers (inclusive) replaced by ``block``."""
    start, end = text.find(README_BEGIN), text.find(README_END)
    if start == -1 or end == -1 or end < start:
        raise ValueError(f"the README has no {README_BEGIN!r} ... {README_END!r} block to replace")
    return text[:start] + block + text[end + len(README_END) :]


def render_markdown(machine: Mapping[str, Any], outcomes: Sequence[BenchOutcome], plots: Sequence[str]) -> str:
    failed = [o.name for o in outcomes if o.failed]
    lines = [
        "# Benchmark report",
        "",
        f"Date {machine.get('date', NONE)}, commit {machine.get('commit', NONE)}, nproc {machine.get('nproc', NONE)}, "
        f"quick={machine.get('quick', False)}. Benchmarks: {', '.join(o.name for o in outcomes) or 'none'}; "
        f"failed: {', '.join(failed) or 'none'}.",
        "",
    ]
    sidecar = next((o.figures for o in outcomes if o.name == "sidecar" and not o.failed), None)
    counts = sorted(int(n) for n in get(sidecar, "workers") or {})
    if len(counts) < 2:
        lines += [
            "Throughput vs workers: "
            + ("only one worker count fits " if counts else "not measured ")
            + "on this host (the sidecar benchmark's workers part uses half the CPUs for proxies and half "
            "for the load; it runs by default with 8+ CPUs, `--only workers` elsewhere).",
            "",
        ]
    lines += [section(o) for o in outcomes]
    if plots:
        lines += ["## Plots", ""]
        lines += [f"![{Path(p).stem}]({Path(p).name})" for p in plots]
        lines.append("")
    return "\n".join(lines)


def _bars(ax: Any, groups: Mapping[str, Mapping[str, float]], ylabel: str) -> None:
    """Grouped bars: one group per outer key, one bar per inner key."""
    series = sorted({k for inner in groups.values() for k in inner})
    width = 0.8 / max(1, len(series))
    for i, name in enumerate(series):
        xs = [g + i * width for g in range(len(groups))]
        ax.bar(xs, [groups[g].get(name, 0.0) for g in groups], width, label=name)
    ax.set_xticks([g + width * (len(series) - 1) / 2 for g in range(len(groups))], list(groups))
    ax.tick_params(axis="x", labelrotation=20)  # long group names (policies, route cases) would overlap
    ax.set_ylabel(ylabel)
    ax.legend()


def plot_data(figures: Mapping[str, Mapping[str, Any]]) -> dict[str, tuple[dict[str, dict[str, float]], str]]:
    """Plot name → (grouped values, y label), only for the figures present."""
    out: dict[str, tuple[dict[str, dict[str, float]], str]] = {}

    def keep(groups: dict[str, dict[str, float | None]]) -> dict[str, dict[str, float]]:
        kept = {g: {k: v for k, v in inner.items() if v is not None} for g, inner in groups.items()}
        return {g: inner for g, inner in kept.items() if inner}

    sidecar = figures.get("sidecar", {})
    lat = sidecar.get("latency")
    if lat:
        pcts = ("p50_ms", "p90_ms", "p99_ms", "p999_ms")
        names = {"direct": "direct", "two_hops": "sidecar (2 hops)", "haproxy_two_hops": "HAProxy (2 hops)"}
        groups = {p.removesuffix("_ms"): {label: num(lat, key, p) for key, label in names.items()} for p in pcts}
        out["sidecar_latency"] = (keep(groups), "ms at 1,000 rps")
    if sidecar.get("cpu"):
        cpu = sidecar["cpu"]
        groups = {
            "CPU µs/request": {k: num(cpu, "us_per_req", k) for k in ("sidecar", "haproxy", "bare")},
            "krps": {k: (v / 1000 if (v := num(cpu, "rps", k)) is not None else None) for k in ("sidecar", "haproxy")},
        }
        out["sidecar_throughput"] = (keep(groups), "value")
    if workers := get(sidecar, "workers"):  # {"1": {"sidecar": rps, "haproxy": rps}, ...}: only on many cores
        out["throughput_vs_workers"] = (keep({str(w): dict(v) for w, v in workers.items()}), "requests/s")
    dns = figures.get("dns", {})
    if dns:
        groups = {
            "cached": {"mesh": num(dns, "cached_qps", "mesh"), "dnsmasq": num(dns, "cached_qps", "dnsmasq")},
            "uncached": {
                "mesh": num(dns, "uncached_qps", "mesh"),
                "dnsmasq": num(dns, "uncached_qps", "dnsmasq_same_names"),
            },
            "uncached mix": {"mesh": num(dns, "uncached_mix_qps", "mesh")},
        }
        out["dns_qps"] = (keep(groups), "queries/s")
    control = figures.get("control", {})
    if control:
        groups = {
            "all ACKed": {"p50": num(control, "all_acked_p50_ms"), "p99": num(control, "all_acked_p99_ms")},
            "one ACK": {"p50": num(control, "sidecar_ack_p50_ms"), "p99": num(control, "sidecar_ack_p99_ms")},
        }
        out["control_apply_ack"] = (keep(groups), "ms")
    phases = get(figures.get("registrar", {}), "phases")
    if phases:
        groups = {
            f"{get(p, 'concurrency')} {get(p, 'host_ports')}": {
                "p50": num(p, "register_ms", "p50"),
                "p99": num(p, "register_ms", "p99"),
            }
            for p in phases
        }
        out["registrar_visible"] = (keep(groups), "ms start → visible")
    lb = figures.get("lb", {})
    if lb.get("policies"):
        peer = num(lb, "peer", "pick_ns_100")
        groups = {k: {"pick": num(v, "pick_ns_100"), "random.choice": peer} for k, v in lb["policies"].items()}
        out["lb_pick_ns"] = (keep(groups), "ns per pick at N=100")
    route = figures.get("route", {})
    if route.get("cases"):
        groups = {k: {"ours": num(v, "ours_us"), "naive": num(v, "naive_us")} for k, v in route["cases"].items()}
        out["route_select_us"] = (keep(groups), "µs per select_route")
    return {name: data for name, data in out.items() if data[0]}


def write_plots(figures: Mapping[str, Mapping[str, Any]], out_dir: Path) -> list[Path]:
    """One PNG per plot in :func:`plot_data`; needs matplotlib (imported here only, Agg backend)."""
    import matplotlib  # lazy: only the plots need it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for name, (groups, ylabel) in plot_data(figures).items():
        fig, ax = plt.subplots(figsize=(8, 4.5))
        _bars(ax, groups, ylabel)
        ax.set_title(name.replace("_", " "))
        fig.tight_layout()
        path = out_dir / f"{name}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written
