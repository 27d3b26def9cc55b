"""The control-plane fixtures for this package (defined in ``fixtures`` so other packages can import them)."""

from tests.mesh.control.fixtures import api, control, start_control

__all__ = ["api", "control", "start_control"]
