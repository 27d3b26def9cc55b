#!/usr/bin/env bash
# Set up (first run only) and start the mesh on its embedded defaults: `mesh up`.
# Extra arguments go to `mesh up` (see `.venv/bin/mesh up --help`).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
"$root/deploy/dev/bootstrap.sh"
cd "$root"
exec .venv/bin/mesh up "$@"
