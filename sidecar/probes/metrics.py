"""Probe and app metrics (``mesh_workload_*``), in the process-wide registry the admin ``/metrics`` serves.

- ``mesh_workload_probe_results_total{probe,result}``: every probe run (result passing/warning/critical);
- ``mesh_workload_check_status{check,status}``: 1 for the status each registry check reports now;
- ``mesh_workload_app_restarts_total{reason}``: restarts of the supervised app (liveness, startup, exited).
"""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge

PROBE_RESULTS: Final = Counter(
    "mesh_workload_probe_results_total", "Probe runs of the local workload, by result.", ["probe", "result"]
)
CHECK_STATUS: Final = Gauge(
    "mesh_workload_check_status", "1 for the status each registry check of the workload reports.", ["check", "status"]
)
APP_RESTARTS: Final = Counter(
    "mesh_workload_app_restarts_total", "Restarts of the app the sidecar runs (-- CMD), by reason.", ["reason"]
)


def set_check_status(check: str, status: str) -> None:
    for candidate in ("passing", "warning", "critical"):
        CHECK_STATUS.labels(check, candidate).set(1 if candidate == status else 0)


__all__ = ["APP_RESTARTS", "CHECK_STATUS", "PROBE_RESULTS", "set_check_status"]
