"""Listen addresses from flags and env vars: ``HOST:PORT`` in its usual spellings."""

from __future__ import annotations

import ipaddress


def split_host_port(address: str, default_port: int | None = None, *, name: str = "address") -> tuple[str, int]:
    """``"127.0.0.1:8500"``, ``"[::1]:8500"``, ``":8500"`` or ``"host"`` → (host, port).

    An empty host means 127.0.0.1; a missing port means ``default_port``. A bad port, or a missing
    one with no default, is a ``ValueError`` that names ``name`` (the flag the address came from).
    """
    host, sep, port = address.rpartition(":")
    if not sep or "]" in port:  # no colon, or only the colons of a bracketed IPv6 address
        if default_port is None:
            raise ValueError(f"{name}: expected HOST:PORT, got {address!r}")
        return address.strip("[]") or "127.0.0.1", default_port
    if not (port.isascii() and port.isdigit()) or not 0 <= int(port) <= 65535:
        raise ValueError(f"{name}: expected HOST:PORT with a port 0-65535, got {address!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP literals (127.0.0.0/8, ::1, IPv4-mapped ones); any other
    name counts as reachable from elsewhere, since what it resolves to can change."""
    name = host.strip("[]").lower().rstrip(".")
    if name == "localhost":
        return True
    try:
        address = ipaddress.ip_address(name.partition("%")[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback
