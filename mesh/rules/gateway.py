"""``Gateway`` (networking.istio.io/v1): the ports, hosts and TLS of an edge proxy, types and validation (pure).

A Gateway selects gateway proxies by their labels (``selector: {istio: ingressgateway}``) and
describes the servers they run: ``port`` (``number``, ``name``, ``protocol`` ``HTTP`` or ``HTTPS``),
``hosts`` (``host``, ``*.example.com``, ``*``, each optionally ``namespace/``-prefixed as Istio
writes them: ``./`` and ``*/`` are accepted, the namespace part only narrows which
VirtualServices may bind), and ``tls``: ``httpsRedirect`` on HTTP servers; ``mode: SIMPLE``
(``serverCertificate`` + ``privateKey``) or ``MUTUAL`` (plus ``caCertificates``) on HTTPS
servers, with file paths as Istio's file-mounted form takes them (the files are read by the
gateway proxy, which refuses a snapshot whose files it cannot load). VirtualServices bind to a
Gateway by naming it in ``gateways`` (``name`` in their own namespace, or ``namespace/name``).

Refused with a precise error, never ignored: other protocols (``TLS``/``TCP`` passthrough, gRPC,
HTTP/2), ``credentialName`` (Kubernetes secrets), ``PASSTHROUGH`` / ``AUTO_PASSTHROUGH`` /
``ISTIO_MUTUAL`` modes, two servers of one Gateway on a port with different protocols, and
overlapping hosts on one port (checked across Gateways with the same selector by ``mesh.rules.checks``).
"""

from __future__ import annotations

from dataclasses import dataclass

from mesh.model.reader import ConfigError
from mesh.rules.fields import Reader, not_supported, parse_host

PROTOCOLS = ("HTTP", "HTTPS", "TLS")
_OTHER_PROTOCOLS = ("HTTP2", "GRPC", "GRPC-WEB", "TCP", "MONGO", "MYSQL", "REDIS", "UDP")
TLS_MODES = ("SIMPLE", "MUTUAL")
_OTHER_TLS_MODES = ("AUTO_PASSTHROUGH", "ISTIO_MUTUAL", "OPTIONAL_MUTUAL")


@dataclass(frozen=True, slots=True)
class ServerTls:
    mode: str = ""  # SIMPLE or MUTUAL; "" on an HTTP server
    https_redirect: bool = False
    server_certificate: str = ""
    private_key: str = ""
    ca_certificates: str = ""


@dataclass(frozen=True, slots=True)
class GatewayHost:
    """One ``hosts`` entry: ``namespace`` is "*" (any), "." (the Gateway's own) or a namespace name."""

    namespace: str
    host: str  # a DNS name, ``*.suffix`` or ``*``

    def matches(self, name: str) -> bool:
        """Whether the host name ``name`` (a VirtualService host, or a request's Host) is one of this entry's."""
        pattern, name = self.host.lower(), name.lower()
        if pattern == "*":
            return True
        if pattern.startswith("*."):
            return name.endswith(pattern[1:]) or (name.startswith("*.") and name.endswith(pattern[1:]))
        return name == pattern


@dataclass(frozen=True, slots=True)
class Server:
    number: int
    protocol: str
    hosts: tuple[GatewayHost, ...]
    port_name: str = ""
    name: str = ""
    tls: ServerTls = ServerTls()


@dataclass(frozen=True, slots=True)
class GatewaySpec:
    selector: tuple[tuple[str, str], ...]
    servers: tuple[Server, ...]


def parse_gateway(spec: Reader) -> GatewaySpec:
    selector = spec.string_map("selector")
    servers = spec.items("servers", _server, required=True)
    if not servers:
        raise ConfigError(spec.at("servers"), "needs at least one server")
    for i, server in enumerate(servers):
        for j, other in enumerate(servers[:i]):
            if server.number != other.number:
                continue
            if server.protocol != other.protocol:
                raise ConfigError(
                    spec.at(f"servers[{i}].port.protocol"),
                    f"port {server.number} is {other.protocol} in servers[{j}]: one protocol per port",
                )
            clash = overlap(server.hosts, other.hosts)
            if clash:
                raise ConfigError(
                    spec.at(f"servers[{i}].hosts"),
                    f"{clash} is already served on port {server.number} by servers[{j}]",
                )
    return GatewaySpec(selector, servers)


def overlap(a: tuple[GatewayHost, ...], b: tuple[GatewayHost, ...]) -> str:
    """A host two server host lists both claim ("" when none): equal names, or a wildcard covering the other."""
    for x in a:
        for y in b:
            if x.matches(y.host) or y.matches(x.host):
                return x.host if len(x.host) >= len(y.host) else y.host
    return ""


def _server(obj: Reader) -> Server:
    port = obj.child("port")
    number = port.whole("number", 1, 65535, required=True) or 1
    protocol = (port.text("protocol", required=True) or "").upper()
    port_name = port.text("name") or ""
    port.take("targetPort", None)  # Kubernetes' concern: the proxy listens on ``number``
    port.finish()
    if protocol in _OTHER_PROTOCOLS:
        raise not_supported(obj.at("port.protocol"), f"protocol {protocol} on a gateway (HTTP and HTTPS are)")
    if protocol not in PROTOCOLS:
        raise ConfigError(obj.at("port.protocol"), f"must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    hosts = tuple(_host(item, obj.at(f"hosts[{i}]")) for i, item in enumerate(obj.strings("hosts", required=True)))
    if not hosts:
        raise ConfigError(obj.at("hosts"), "needs at least one host")
    tls = _tls(obj.optional_child("tls"), protocol, obj.at("tls"))
    name = obj.text("name") or ""
    for key in ("bind", "defaultEndpoint"):
        if obj.take(key, None) is not None:
            raise not_supported(obj.at(key), f"{key} (the gateway listens where `mesh gateway --bind-addr` says)")
    return Server(number, protocol, hosts, port_name, name, tls)


def _host(text: str, path: str) -> GatewayHost:
    namespace, sep, host = text.rpartition("/")
    if not sep:
        namespace = "*"
    elif not namespace or "/" in namespace:
        raise ConfigError(path, f"must be host or namespace/host, got {text!r}")
    host = parse_host(host, path, wildcard=True)
    return GatewayHost(namespace, host)


def _tls(obj: Reader | None, protocol: str, path: str) -> ServerTls:
    if obj is None:
        if protocol == "HTTPS":
            raise ConfigError(path, "an HTTPS server needs tls (mode SIMPLE or MUTUAL, with its certificate files)")
        if protocol == "TLS":
            raise ConfigError(path, "a TLS server needs tls.mode PASSTHROUGH (routed by SNI)")
        return ServerTls()
    redirect = obj.boolean("httpsRedirect") or False
    mode = (obj.text("mode") or "").upper()
    if obj.take("credentialName", None) is not None:
        raise not_supported(
            obj.at("credentialName"),
            "credentialName (a Kubernetes secret): give serverCertificate and privateKey files",
        )
    certificate = obj.text("serverCertificate") or ""
    key = obj.text("privateKey") or ""
    ca = obj.text("caCertificates") or ""
    for name in ("minProtocolVersion", "maxProtocolVersion", "cipherSuites", "subjectAltNames"):
        if obj.take(name, None) is not None:
            raise not_supported(obj.at(name), f"tls.{name}")
    obj.finish()
    if protocol == "HTTP":
        if mode or certificate or key or ca:
            raise ConfigError(path, "an HTTP server takes only httpsRedirect (use protocol HTTPS to terminate TLS)")
        return ServerTls(https_redirect=redirect)
    if protocol == "TLS":
        if mode != "PASSTHROUGH" or certificate or key or ca or redirect:
            raise ConfigError(f"{path}.mode", "a TLS server passes TLS through by SNI: mode PASSTHROUGH, no files")
        return ServerTls(mode)
    if mode == "PASSTHROUGH":
        raise ConfigError(f"{path}.mode", "PASSTHROUGH is for protocol TLS servers (this one terminates: HTTPS)")
    if mode in _OTHER_TLS_MODES:
        raise not_supported(f"{path}.mode", f"tls mode {mode} on a gateway (SIMPLE and MUTUAL are)")
    if mode not in TLS_MODES:
        raise ConfigError(f"{path}.mode", f"must be one of {', '.join(TLS_MODES)}, got {mode or 'nothing'!r}")
    for field, value in (("serverCertificate", certificate), ("privateKey", key)):
        if not value:
            raise ConfigError(f"{path}.{field}", f"is required with mode {mode} (a PEM file the gateway reads)")
        if not value.startswith("/"):
            raise ConfigError(f"{path}.{field}", f"must be an absolute path on the gateway's machine, got {value!r}")
    if mode == "MUTUAL" and not ca:
        raise ConfigError(
            f"{path}.caCertificates", "is required with mode MUTUAL (the CA client certificates chain to)"
        )
    if ca and not ca.startswith("/"):
        raise ConfigError(f"{path}.caCertificates", f"must be an absolute path on the gateway's machine, got {ca!r}")
    return ServerTls(mode, redirect, certificate, key, ca)


__all__ = ["PROTOCOLS", "TLS_MODES", "GatewayHost", "GatewaySpec", "Server", "ServerTls", "overlap", "parse_gateway"]
