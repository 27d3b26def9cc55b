"""`mesh inject`: add the sidecar to Kubernetes workloads and docker-compose services, idempotently.

``documents.py`` splits a YAML stream and puts it back (untouched documents byte for byte),
``kubernetes.py`` and ``compose.py`` are the pure rewrites of one parsed document, ``settings.py``
holds what the injected sidecar looks like. docs/workloads.md describes the result.
"""
