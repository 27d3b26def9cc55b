"""``python -m mesh.demo.sidecar [FLAGS]``: `mesh sidecar` itself (``mesh.cli_sidecar``), for the demo's children.

The same command function, flags and validation, and the same ``exec`` into ``sidecar.main``;
only the rest of the `mesh` command line (registry, DNS, control plane: about 1 s of CPU to
import) is not loaded six times while the demo starts.
"""

from __future__ import annotations

import typer

from mesh.cli_sidecar import sidecar_command


def main() -> None:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(sidecar_command)
    app(prog_name="mesh sidecar")


if __name__ == "__main__":
    main()
