"""``python -m mesh.demo.guard PARENT_PID PROGRAM [ARGS...]``: run PROGRAM, ended when PARENT_PID dies.

`mesh up --demo` stops its children itself on SIGTERM/SIGINT; this covers the case it cannot
handle, being killed (SIGKILL, OOM). On Linux the kernel then sends the child SIGTERM
(``PR_SET_PDEATHSIG``, kept across ``exec``), so no demo workload or sidecar outlives it.
Set here, in the child, rather than in a ``preexec_fn`` that is unsafe in a threaded parent.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from typing import NoReturn

PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> bool:
    """Ask for SIGTERM when the parent dies; False if that is not possible or the parent is already gone."""
    if not sys.platform.startswith("linux"):
        return os.getppid() == parent_pid
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        return False
    return os.getppid() == parent_pid  # checked after prctl: the parent may have died just before


def main(argv: list[str]) -> NoReturn:
    if len(argv) < 2 or not argv[0].isdigit():
        sys.exit("usage: python -m mesh.demo.guard PARENT_PID PROGRAM [ARGS...]")
    if not die_with_parent(int(argv[0])):
        sys.exit(1)  # the parent is gone: nothing to run for
    os.execv(argv[1], argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
