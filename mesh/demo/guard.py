"""``python -m mesh.demo.guard PARENT_PID PROGRAM [ARGS...]``: run PROGRAM, ended when PARENT_PID dies.

`mesh up --demo` stops its children itself on SIGTERM/SIGINT; this covers the case it cannot
handle, being killed (SIGKILL, OOM). On Linux the kernel then sends the child SIGTERM
(``PR_SET_PDEATHSIG``, kept across ``exec``), so no demo workload or sidecar outlives it.
Set here, in the child, rather than in a ``preexec_fn`` that is unsafe in a threaded parent.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

from discovery.runtime.lifecycle import die_with_parent


def main(argv: list[str]) -> NoReturn:
    if len(argv) < 2 or not argv[0].isdigit():
        sys.exit("usage: python -m mesh.demo.guard PARENT_PID PROGRAM [ARGS...]")
    if not die_with_parent(int(argv[0])):
        sys.exit(1)  # the parent is gone: nothing to run for
    os.execv(argv[1], argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
