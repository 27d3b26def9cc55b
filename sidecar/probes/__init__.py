"""The sidecar's work for its local workload: Kubernetes-style probes reported as registry TTL checks,
registration of the instance, supervision of the app (``mesh sidecar ... -- CMD``), graceful shutdown."""
