"""bench/report.py: tables and plots from benchmarks' final JSON lines (recorded; no benchmark runs here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.report import BenchOutcome, last_json_line, plot_data, render_markdown, rows_for, write_plots

# Whole stdout recorded from `bench/route_bench.py --rounds 2 --count 2000` and `bench/lb_bench.py
# --repeats 2 --build-repeats 1 --sizes 10,100` (2026-11-23, 2-core host).
RECORDED = Path(__file__).parent / "recorded"
ROUTE_OUT = (RECORDED / "route_bench.out").read_text()
LB_OUT = (RECORDED / "lb_bench.out").read_text()
ROUTE_LINE = ROUTE_OUT.strip().splitlines()[-1]
LB_LINE = LB_OUT.strip().splitlines()[-1]

# Shaped as the scripts build them (sidecar_bench.main, dns_bench.main, control_bench.drive,
# registrar_bench.run_bench, resilience_bench.main, registry_bench.main); figures chosen for the checks.
SIDECAR: dict[str, Any] = {
    "commit": "abc1234",
    "quick": True,
    "cpu": {
        "us_per_req": {"sidecar": 60.0, "haproxy": 30.0, "bare": 45.0},
        "rps": {"sidecar": 9000.0, "haproxy": 20000.0},
        "ratio": 0.5,
    },
    "latency": {
        "direct": {"p50_ms": 0.1, "p90_ms": 0.12, "p99_ms": 0.2, "p999_ms": 0.4},
        "two_hops": {"p50_ms": 0.3, "p90_ms": 0.35, "p99_ms": 0.4, "p999_ms": 0.9},
        "haproxy_two_hops": {"p50_ms": 0.15, "p90_ms": 0.18, "p99_ms": 0.25, "p999_ms": 0.5},
        "added_p50_ms": 0.2,
        "added_p99_ms": 0.2,
        "haproxy_added_p50_ms": 0.05,
        "haproxy_added_p99_ms": 0.05,
        "core_share": 0.08,
        "haproxy_core_share": 0.02,
        "rss_mb": 21.5,
    },
    "swaps": {"swaps": 100, "failed": 0, "requests": 50000, "applied": 101},
}
DNS: dict[str, Any] = {
    "bench": "dns",
    "cached_qps": {"mesh": 51377.0, "dnsmasq": 65036.0, "ratio": 0.79, "cpu_per_query_ratio": 0.92},
    "uncached_qps": {"mesh": 55720.0, "dnsmasq_same_names": 98439.0, "ratio": 0.57, "cpu_per_query_ratio": None},
    "uncached_mix_qps": {"mesh": 39437.0, "server_us_per_query": 25.0},
    "memory_mb": {"mesh_rss_synced": 324.0, "mesh_rss_after_load": 359.0, "dnsmasq_rss": 11.9},
}
CONTROL: dict[str, Any] = {
    "sidecars": 20,
    "all_acked_p50_ms": 40.0,
    "all_acked_p99_ms": 250.0,
    "sidecar_ack_p50_ms": 12.0,
    "sidecar_ack_p99_ms": 30.0,
    "control_cpu_ms_per_apply": 8.5,
}
REGISTRAR: dict[str, Any] = {
    "machine": {"nproc": 2},
    "phases": [
        {"concurrency": 1, "host_ports": "ephemeral", "register_ms": {"p50": 5.7, "p95": 9.0, "p99": 13.0}},
        {"concurrency": 4, "host_ports": "ephemeral", "register_ms": {"p50": 10.6, "p95": 40.0, "p99": 69.3}},
    ],
}
RESILIENCE: dict[str, Any] = {
    "bench": "resilience",
    "summary": {
        "sidecar": {"fault_error_rate_pct": 0.0, "p99_fault_ms": 4.2, "eject_s": 0.5},
        "haproxy": {"fault_error_rate_pct": 1.5, "p99_fault_ms": 3.0, "eject_s": None},
    },
}
REGISTRY: dict[str, Any] = {
    "bench": "registry",
    "registration": {"rate": 2173.0, "cpu_s_per_1000": 0.45},
    "scale": {"rss_loaded_mb": 308.0, "rss_peak_mb": 419.0},
    "fanout": [{"round_p99_ms": [28.0, 30.8, 33.0]}],
}


def cells(name: str, figures: dict[str, Any]) -> list[tuple[str, ...]]:
    return [row.cells() for row in rows_for(name, figures)]


def test_last_json_line_takes_the_final_object() -> None:
    parsed = last_json_line(ROUTE_OUT + "\n")
    assert last_json_line(LB_OUT) == json.loads(LB_LINE)
    assert parsed is not None
    assert parsed["bench"] == "route"
    assert last_json_line("no figures\n") is None
    assert last_json_line("[1, 2]\n") is None
    assert last_json_line("") is None


def test_route_rows_pair_ours_with_the_naive_scan() -> None:
    figures = json.loads(ROUTE_LINE)
    rows = cells("route", figures)
    assert rows[0] == (
        "short name, first route (exact path): µs per select_route",
        "1.00",
        "naive scan 172.6",
        "-",
        "-",
    )
    assert rows[-1][:2] == ("mean over cases, µs", "1.52")
    assert len(rows) == len(figures["cases"]) + 1


def test_lb_rows_check_the_pick_target_against_random_choice() -> None:
    rows = cells("lb", json.loads(LB_LINE))
    assert rows[0] == (
        "round_robin: pick ns at N=100 (retry pick)",
        "131 (205)",
        "random.choice 230",
        "< 2000 ns",
        "yes",
    )
    assert [r[0].split(":")[0] for r in rows][-2:] == ["ring_hash", "maglev"]
    assert all(r[4] == "yes" for r in rows)


def test_sidecar_rows_show_haproxy_and_unmet_targets() -> None:
    rows = {r[0]: r for r in cells("sidecar", SIDECAR)}
    cpu = rows["L7 CPU µs/request (HAProxy / sidecar ratio)"]
    assert cpu[1:] == ("60.0 (0.50)", "HAProxy 30.0, bare 45.0", "ratio ≥ 0.6", "**no**")
    latency = rows["2 hops at 1,000 rps p50 / p99 (added p99)"]
    assert latency[1] == "0.300 / 0.400 ms (+0.200)"
    assert latency[2] == "HAProxy 0.150 / 0.250 ms; direct 0.100 / 0.200 ms"
    assert latency[4] == "yes"
    assert rows["CPU share of one sidecar at 1,000 rps"][4] == "**no**"
    assert rows["RSS of one sidecar"][1:] == ("21.5 MB", "-", "≤ 25 MB", "yes")
    assert rows["100 hot swaps under load"][1] == "0 failed of 50000"
    assert "L4 throughput Gbit/s (ratio)" not in rows  # part not run: no row


def test_dns_rows_put_mesh_beside_dnsmasq() -> None:
    rows = cells("dns", DNS)
    assert rows[0] == (
        "cached QPS (ratio by QPS; by CPU per query)",
        "51,377 (0.79x; 0.92x)",
        "dnsmasq 65,036",
        "≥ 0.9x dnsmasq",
        "**no**",
    )
    assert rows[1][1:] == ("55,720", "dnsmasq 98,439 (same names, its cache)", "≥ 40,000", "yes")
    assert rows[2][4] == "**no**"
    assert rows[3][1:3] == ("324 / 359 MB", "dnsmasq 11.9 MB")


def test_registrar_control_resilience_registry_rows() -> None:
    registrar = cells("registrar", REGISTRAR)
    assert [r[1] for r in registrar] == ["5.7 / 13.0 ms", "10.6 / 69.3 ms"]
    assert [r[4] for r in registrar] == ["yes", "**no**"]
    control = cells("control", CONTROL)
    assert control[0][:2] == ("apply → all 20 sidecars ACK, p50 / p99", "40.0 / 250.0 ms")
    assert control[0][4] == "**no**"
    resilience = cells("resilience", RESILIENCE)
    assert resilience[0][1:] == ("0.000 %", "haproxy 1.500 %", "≤ 0.1 %", "yes")
    assert resilience[2][2] == "haproxy -"
    registry = cells("registry", REGISTRY)
    assert registry[0][1] == "2,173; 0.45 CPU-s per 1000"
    assert [r[4] for r in registry] == ["yes", "yes", "yes"]
    assert registry[2][1] == "30.8 ms"


def test_missing_figures_read_as_dashes_not_errors() -> None:
    rows = cells("control", {})
    assert rows[0][1] == "- / - ms"
    assert rows[0][4] == "-"


def test_markdown_has_a_section_per_benchmark_and_reports_failures() -> None:
    outcomes = [
        BenchOutcome("route", json.loads(ROUTE_LINE), 0, "", 3.0, (0.5, 0.4, 0.3), (0.6, 0.4, 0.3)),
        BenchOutcome("dns", None, 1, "Traceback ...\nRuntimeError: dnsperf missing", 1.0),
    ]
    machine = {"date": "2026-11-23 20:50 UTC", "commit": "e4d7c14", "nproc": 2, "quick": True}
    text = render_markdown(machine, outcomes, ["route_select_us.png"])
    assert "commit e4d7c14, nproc 2" in text
    assert "failed: dns." in text
    assert "## Route selection" in text
    assert "| mean over cases, µs | 1.52 | - | - | - |" in text
    assert "**FAILED** (no JSON figures on its last line)" in text
    assert "RuntimeError: dnsperf missing" in text
    assert "Throughput vs workers: not measured on this host" in text
    assert "![route_select_us](route_select_us.png)" in text
    assert "load average before [0.5, 0.4, 0.3], after [0.6, 0.4, 0.3]" in text


def test_plot_data_groups_only_present_figures() -> None:
    data = plot_data({"sidecar": SIDECAR, "dns": DNS})
    assert set(data) == {"sidecar_latency", "sidecar_throughput", "dns_qps"}
    latency, _ = data["sidecar_latency"]
    assert latency["p999"] == {"direct": 0.4, "sidecar (2 hops)": 0.9, "HAProxy (2 hops)": 0.5}
    assert data["dns_qps"][0]["uncached mix"] == {"mesh": 39437.0}


def test_plots_are_written_as_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    workers = {"workers": {"1": {"sidecar": 9000.0, "haproxy": 20000.0}, "4": {"sidecar": 30000.0, "haproxy": 70000.0}}}
    figures = {
        "sidecar": {**SIDECAR, **workers},
        "dns": DNS,
        "control": CONTROL,
        "registrar": REGISTRAR,
        "lb": json.loads(LB_LINE),
        "route": json.loads(ROUTE_LINE),
    }
    written = write_plots(figures, tmp_path)
    names = {p.name for p in written}
    assert names == {
        "sidecar_latency.png",
        "sidecar_throughput.png",
        "throughput_vs_workers.png",
        "dns_qps.png",
        "control_apply_ack.png",
        "registrar_visible.png",
        "lb_pick_ns.png",
        "route_select_us.png",
    }
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_worker_counts_leave_half_the_cpus_to_the_load() -> None:
    from bench.sidecar_bench import worker_counts

    assert worker_counts(2, 8) == [1]
    assert worker_counts(16, 8) == [1, 2, 4, 8]
    assert worker_counts(16, 3) == [1, 2]
    assert worker_counts(1, 8) == [1]


def test_readme_block_is_spliced_between_its_markers() -> None:
    from bench.report import README_BEGIN, README_END, readme_block, splice_readme

    outcomes = [
        BenchOutcome("route", json.loads(ROUTE_LINE), 0, "", 3.0),
        BenchOutcome("dns", None, 1, "boom", 1.0),
    ]
    machine = {"date": "2026-11-23 22:00 UTC", "commit": "abc1234", "nproc": 2, "quick": False}
    block = readme_block(machine, outcomes, "bench/results/X/report.md")
    assert block.startswith(README_BEGIN)
    assert block.endswith(README_END)
    assert "full run, 2026-11-23 22:00 UTC, commit abc1234" in block
    assert "| mean over cases, µs | 1.52 | - | - | - |" in block
    assert "Failed in this run (exit status 1)" in block
    readme = f"# T\n\n## Performance\n\n{README_BEGIN}\nold\n{README_END}\n\n### Notes\n"
    spliced = splice_readme(readme, block)
    assert "old" not in spliced
    assert spliced.startswith("# T\n\n## Performance\n\n" + README_BEGIN)
    assert spliced.endswith(README_END + "\n\n### Notes\n")
    assert splice_readme(spliced, block) == spliced  # idempotent
    with pytest.raises(ValueError, match="no"):
        splice_readme("# no markers\n", block)
