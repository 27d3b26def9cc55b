"""Transparent interception: the iptables rules that send a workload's TCP traffic through its sidecar.

The same scheme as Istio's init step (``istio-iptables``), with our own chain names: in the
workload's network namespace, the ``nat`` table redirects

- **inbound** TCP (``PREROUTING``: connections arriving from other hosts) to the sidecar's
  inbound port (15006), except ports listed in ``exclude_inbound_ports`` (or, with an explicit
  ``inbound_ports`` list, only those);
- **outbound** TCP (``OUTPUT``: connections the workload opens) to the sidecar's outbound port
  (15001), except traffic of the sidecar itself (its uid, and gid when given, so its own upstream
  connections are not looped back), traffic to loopback, ``exclude_outbound_cidrs`` and
  ``exclude_outbound_ports``; with ``outbound_cidrs`` only those destinations are redirected.

``REDIRECT`` rewrites a locally generated connection's destination to 127.0.0.1 and an arriving
one's to the interface address, so the sidecar's outbound listener may stay on loopback while the
inbound one must listen on all addresses (``--inbound-addr 0.0.0.0:15006``). The original
destination stays readable on the accepted socket (``SO_ORIGINAL_DST``, ``sidecar.original_dst``).

Only the ``nat`` table's own chains are written; the rules go in as one ``iptables-restore
--noflush`` transaction, so a half-applied state cannot happen. IPv4 only (``ip6tables`` is left
as it is). Everything here is a pure function of ``InterceptionSettings``: rendering is tested
without a namespace, ``mesh.intercept.apply`` runs the commands.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

INBOUND_CHAIN = "MESH_INBOUND"
INBOUND_REDIRECT_CHAIN = "MESH_IN_REDIRECT"
OUTPUT_CHAIN = "MESH_OUTPUT"
OUTBOUND_REDIRECT_CHAIN = "MESH_REDIRECT"
CHAINS = (INBOUND_CHAIN, INBOUND_REDIRECT_CHAIN, OUTPUT_CHAIN, OUTBOUND_REDIRECT_CHAIN)
# The built-in chains' jumps into ours: what `clean` removes before dropping the chains.
JUMPS = (("PREROUTING", INBOUND_CHAIN), ("OUTPUT", OUTPUT_CHAIN))

DEFAULT_PROXY_UID = 1337  # Istio's convention: the sidecar runs as this user
ALL = "*"


class InterceptionError(ValueError):
    """Invalid interception settings; ``field`` names the setting at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True, slots=True)
class InterceptionSettings:
    proxy_uid: int = DEFAULT_PROXY_UID
    proxy_gid: int | None = None
    outbound_port: int = 15001
    inbound_port: int = 15006
    inbound_ports: tuple[int, ...] | None = None  # None: every port but the excluded ones
    exclude_inbound_ports: tuple[int, ...] = ()
    outbound_cidrs: tuple[str, ...] | None = None  # None: every destination but the excluded ones
    exclude_outbound_cidrs: tuple[str, ...] = ()
    exclude_outbound_ports: tuple[int, ...] = ()


def check_port(field: str, value: int) -> int:
    if not 1 <= value <= 65535:
        raise InterceptionError(field, f"port must be 1..65535, got {value}")
    return value


def parse_ports(field: str, text: str) -> tuple[int, ...] | None:
    """``"*"`` (all: None), ``""`` (none) or comma-separated ports."""
    text = text.strip()
    if text == ALL:
        return None
    ports: list[int] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        if not item.isdigit():
            raise InterceptionError(field, f"{item!r} is not a port number")
        ports.append(check_port(field, int(item)))
    return tuple(dict.fromkeys(ports))


def parse_cidrs(field: str, text: str) -> tuple[str, ...] | None:
    """``"*"`` (all: None), ``""`` (none) or comma-separated IPv4 CIDRs (a bare address is a /32)."""
    text = text.strip()
    if text == ALL:
        return None
    cidrs: list[str] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        try:
            network = ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise InterceptionError(field, f"{item!r} is not an IP address or CIDR") from None
        if network.version != 4:
            raise InterceptionError(field, f"{item!r}: only IPv4 is intercepted (ip6tables is left alone)")
        cidrs.append(str(network))
    return tuple(dict.fromkeys(cidrs))


def validate(settings: InterceptionSettings) -> InterceptionSettings:
    if settings.proxy_uid < 0:
        raise InterceptionError("proxy_uid", f"must be a user id >= 0, got {settings.proxy_uid}")
    if settings.proxy_gid is not None and settings.proxy_gid < 0:
        raise InterceptionError("proxy_gid", f"must be a group id >= 0, got {settings.proxy_gid}")
    check_port("outbound_port", settings.outbound_port)
    check_port("inbound_port", settings.inbound_port)
    if settings.outbound_port == settings.inbound_port:
        raise InterceptionError("inbound_port", "must differ from outbound_port")
    for name in ("inbound_ports", "exclude_inbound_ports", "exclude_outbound_ports"):
        for port in getattr(settings, name) or ():
            check_port(name, port)
    for name in ("outbound_cidrs", "exclude_outbound_cidrs"):
        parse_cidrs(name, ",".join(getattr(settings, name) or ()))
    return settings


def restore_text(settings: InterceptionSettings) -> str:
    """The ``iptables-restore --noflush`` input that installs interception (after ``clean``)."""
    validate(settings)
    lines = ["*nat", *(f":{chain} - [0:0]" for chain in CHAINS)]
    lines += _inbound(settings)
    lines += _outbound(settings)
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def _inbound(s: InterceptionSettings) -> list[str]:
    rules = [f"-A {INBOUND_REDIRECT_CHAIN} -p tcp -j REDIRECT --to-ports {s.inbound_port}"]
    if s.inbound_ports is not None and not s.inbound_ports:
        return rules  # inbound interception off: the chain exists but nothing jumps to it
    rules.append(f"-A PREROUTING -p tcp -j {INBOUND_CHAIN}")
    # The sidecar's own ports are never redirected (a direct connection to them stays direct).
    excluded = dict.fromkeys((s.inbound_port, s.outbound_port, *s.exclude_inbound_ports))
    if s.inbound_ports is None:
        rules += [f"-A {INBOUND_CHAIN} -p tcp --dport {port} -j RETURN" for port in excluded]
        rules.append(f"-A {INBOUND_CHAIN} -p tcp -j {INBOUND_REDIRECT_CHAIN}")
    else:
        rules += [
            f"-A {INBOUND_CHAIN} -p tcp --dport {port} -j {INBOUND_REDIRECT_CHAIN}"
            for port in s.inbound_ports
            if port not in excluded
        ]
    return rules


def _outbound(s: InterceptionSettings) -> list[str]:
    rules = [f"-A {OUTBOUND_REDIRECT_CHAIN} -p tcp -j REDIRECT --to-ports {s.outbound_port}"]
    if s.outbound_cidrs is not None and not s.outbound_cidrs:
        return rules  # outbound interception off
    rules.append(f"-A OUTPUT -p tcp -j {OUTPUT_CHAIN}")
    # The sidecar's own connections (to upstreams, the registry, the control plane) go out as they are.
    rules.append(f"-A {OUTPUT_CHAIN} -m owner --uid-owner {s.proxy_uid} -j RETURN")
    if s.proxy_gid is not None:
        rules.append(f"-A {OUTPUT_CHAIN} -m owner --gid-owner {s.proxy_gid} -j RETURN")
    rules.append(f"-A {OUTPUT_CHAIN} -o lo -j RETURN")  # the workload talking to itself
    rules.append(f"-A {OUTPUT_CHAIN} -d 127.0.0.0/8 -j RETURN")
    rules += [f"-A {OUTPUT_CHAIN} -d {cidr} -j RETURN" for cidr in s.exclude_outbound_cidrs]
    rules += [f"-A {OUTPUT_CHAIN} -p tcp --dport {port} -j RETURN" for port in s.exclude_outbound_ports]
    if s.outbound_cidrs is None:
        rules.append(f"-A {OUTPUT_CHAIN} -j {OUTBOUND_REDIRECT_CHAIN}")
    else:
        rules += [f"-A {OUTPUT_CHAIN} -d {cidr} -j {OUTBOUND_REDIRECT_CHAIN}" for cidr in s.outbound_cidrs]
    return rules


def clean_commands() -> list[list[str]]:
    """``iptables`` argument lists that remove interception; each may fail when already absent."""
    commands = [["-t", "nat", "-D", builtin, "-p", "tcp", "-j", chain] for builtin, chain in JUMPS]
    commands += [["-t", "nat", "-F", chain] for chain in CHAINS]
    commands += [["-t", "nat", "-X", chain] for chain in CHAINS]
    return commands


def describe(settings: InterceptionSettings) -> Sequence[str]:
    """One line per decision, for ``mesh intercept init`` (and ``--dry-run``)."""
    s = settings
    inbound = (
        "off"
        if s.inbound_ports is not None and not s.inbound_ports
        else "all ports"
        if s.inbound_ports is None
        else "ports " + ",".join(map(str, s.inbound_ports))
    )
    outbound = (
        "off"
        if s.outbound_cidrs is not None and not s.outbound_cidrs
        else "all destinations"
        if s.outbound_cidrs is None
        else ",".join(s.outbound_cidrs)
    )
    return (
        f"inbound TCP ({inbound}) -> :{s.inbound_port}"
        + (f", except ports {','.join(map(str, s.exclude_inbound_ports))}" if s.exclude_inbound_ports else ""),
        f"outbound TCP ({outbound}) -> 127.0.0.1:{s.outbound_port}, except loopback"
        + (f", {','.join(s.exclude_outbound_cidrs)}" if s.exclude_outbound_cidrs else "")
        + (f", ports {','.join(map(str, s.exclude_outbound_ports))}" if s.exclude_outbound_ports else ""),
        f"the sidecar's own traffic (uid {s.proxy_uid}"
        + (f", gid {s.proxy_gid}" if s.proxy_gid is not None else "")
        + ") is never redirected",
    )
