"""The mesh's configuration model: snapshot types, parsing and validation, route selection.

Pure code (no I/O), shared by the sidecar and the control plane. Modules: ``snapshot`` (the
types), ``parse`` (text or data → validated ``Snapshot``; ``reader`` holds its field-by-field
helpers and ``ConfigError``), ``dump`` (``Snapshot`` → data, for ``/config_dump``), ``routing``
(request → route → cluster), ``hosts`` (Host header → registry service).
"""
