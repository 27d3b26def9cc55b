"""Installs and removes the interception rules in the current network namespace (needs CAP_NET_ADMIN).

``install`` first removes what an earlier run left (so running the init step twice changes
nothing), then loads the whole rule set in one ``iptables-restore --noflush`` transaction.
"""

from __future__ import annotations

import shutil
import subprocess

from mesh.intercept.rules import InterceptionSettings, clean_commands, restore_text


class InterceptionFailed(RuntimeError):
    """iptables is missing or refused the rules."""


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise InterceptionFailed(f"{name} not found: install iptables (Debian: apt-get install iptables)")
    return path


def clean() -> int:
    """Remove interception; returns how many rules/chains were removed (0 when none was installed)."""
    iptables = _tool("iptables")
    removed = 0
    for args in clean_commands():
        done = subprocess.run([iptables, "-w", *args], capture_output=True, text=True)
        if done.returncode == 0:
            removed += 1
        elif "Permission denied" in done.stderr or "Operation not permitted" in done.stderr:
            raise InterceptionFailed(f"iptables {' '.join(args)}: {done.stderr.strip()} (needs CAP_NET_ADMIN)")
    return removed


def install(settings: InterceptionSettings) -> str:
    """Replace any earlier interception with ``settings``; returns the rules loaded."""
    text = restore_text(settings)
    restore = _tool("iptables-restore")
    clean()
    done = subprocess.run([restore, "-w", "--noflush"], input=text, capture_output=True, text=True)
    if done.returncode != 0:
        raise InterceptionFailed(f"iptables-restore refused the rules: {done.stderr.strip()}")
    return text
