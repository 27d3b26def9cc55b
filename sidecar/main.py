"""The sidecar's own process entry: ``python -m sidecar.main`` with the options in ``MESH_SIDECAR_OPTIONS``.

`mesh sidecar` validates its flags, then replaces itself (``exec``) with this module, so the
long-running proxy process imports only what a sidecar needs: the ``mesh`` command line loads
every part of the project (registry, DNS, control plane, registrar) and would keep them all in
the sidecar's memory for nothing (about 10 MB of its resident set).
"""

from __future__ import annotations

import gc
import json
import os
import sys

from discovery.runtime.logs import configure_logging
from sidecar.probes.options import workload_from_options
from sidecar.tracing import plan_with_tracing
from sidecar.workers import plan_from_options, run_sidecar

OPTIONS_ENV = "MESH_SIDECAR_OPTIONS"


def main() -> int:
    raw = os.environ.pop(OPTIONS_ENV, None)
    if raw is None:
        print(f"{OPTIONS_ENV} is not set: start the sidecar with `mesh sidecar`", file=sys.stderr)
        return 2
    try:
        options = json.loads(raw)
        plan = plan_with_tracing(plan_from_options(options), options)  # --otlp-endpoint, --trace-sampling
        workload = workload_from_options(options, app_port=plan.settings.app_port, workers=plan.workers)
    except ValueError as exc:
        print(f"mesh sidecar: {exc}", file=sys.stderr)
        return 2
    configure_logging(plan.log_level)
    # Requests allocate a few dozen short-lived objects and free them by reference counting (no
    # cycles); the default gen-0 threshold (700) would run a collection every ~20 requests.
    gc.set_threshold(50_000, 20, 100)
    if workload is not None:  # probes, registration, a supervised app (docs/workloads.md)
        from sidecar.probes.serve import run_with_workload

        return run_with_workload(plan, workload)
    return run_sidecar(plan)


if __name__ == "__main__":
    sys.exit(main())
