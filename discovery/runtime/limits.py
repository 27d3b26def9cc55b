"""Process resource limits that long-running parts need raised."""

from __future__ import annotations

import contextlib
import resource


def raise_open_files_limit() -> int:
    """Lift the soft open-files limit to the hard limit and return the new soft limit.

    One parked blocking query holds one connection (DNS keeps one per service; the registry
    serves them all), so the common soft default of 1024 is far too low for 10k services.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft
