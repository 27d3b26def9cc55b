"""Config sources: where the sidecar's snapshots come from, behind one interface (``base``).

``static_file.StaticFileSource`` (``--config FILE``) and ``registry.RegistrySource`` (the registry
alone); ``defaults`` builds the standard listener layout from the sidecar's flags.
"""

from sidecar.sources.base import APPLIED, Apply, ApplyResult, ConfigSource, OnDemand, SourceStats
from sidecar.sources.defaults import SidecarSettings, parse_upstream
from sidecar.sources.registry import RegistrySource
from sidecar.sources.static_file import StaticFileSource

__all__ = [
    "APPLIED",
    "Apply",
    "ApplyResult",
    "ConfigSource",
    "OnDemand",
    "RegistrySource",
    "SidecarSettings",
    "SourceStats",
    "StaticFileSource",
    "parse_upstream",
]
