"""Resilience layers of the sidecar, one small module per concern (Envoy / Istio semantics).

Pure decision cores (clock and RNG injected, no sockets): ``retry`` (conditions, backoff, body
replay, retry budget), ``timeouts``, ``circuit_breaker``, ``outlier``, ``health_check``, ``fault``,
``mirror``, ``rewrite``. Thin I/O edges: ``health_runner`` (probes), ``mirror_sender`` (shadow
copies), ``sharing`` (health results and ejections passed between ``--workers`` processes).
``metrics`` exports their series; ``policy`` composes them per snapshot and defines the
per-request ``RequestPlan`` the proxy's exchange calls (its docstring is the contract).
"""
