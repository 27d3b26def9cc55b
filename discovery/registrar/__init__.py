"""`mesh registrar`: keeps the registry in step with the containers a Docker daemon runs.

Registrator-compatible (one service per published port, ``SERVICE_*`` env vars and labels),
built as a reconciler: the services a container should have are a pure function of its
inspected state (``desired``), what this registrar owns in the registry is marked in service
Meta (``ownership``), and the difference between the two is applied (``diff``). Docker
events only say which container to look at again; a full sync repairs anything missed.
"""
