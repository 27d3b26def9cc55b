"""Where the registry is and how to authenticate, read the way Consul's own tools read it.

``CONSUL_HTTP_ADDR`` takes ``host:port``, ``http://host:port``, ``https://host:port`` or
``unix:///path/to/socket``; ``CONSUL_HTTP_SSL=true`` switches to HTTPS and, as in Consul's
Go client, an explicit ``http://`` never downgrades it. Booleans use Go's ``ParseBool``
spellings. Unlike Consul we reject bad values instead of logging and ignoring them, so a
typo fails at startup rather than silently talking plain HTTP.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal

DEFAULT_ADDRESS = "127.0.0.1:8500"
DEFAULT_PORT = 8500

_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


class ClientConfigError(ValueError):
    """An address, flag or TLS file that cannot be used."""


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """Connection settings for ``RegistryClient``; ``unix_socket`` set means host/port are unused."""

    scheme: Literal["http", "https"] = "http"
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    unix_socket: str | None = None
    token: str | None = None
    verify: bool = True
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    @property
    def base_url(self) -> str:
        """URL prefix for requests; over a unix socket the host part is only a placeholder."""
        if self.unix_socket is not None:
            return f"{self.scheme}://localhost"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @classmethod
    def from_address(cls, address: str, *, token: str | None = None) -> ClientConfig:
        """Parse one of the ``CONSUL_HTTP_ADDR`` forms; a missing port means 8500."""
        text = address.strip()
        scheme: Literal["http", "https"] = "http"
        if "://" in text:
            prefix, text = text.split("://", 1)
            if prefix == "unix":
                if not text:
                    raise ClientConfigError(f"address {address!r}: unix:// needs a socket path")
                return cls(unix_socket=text, token=token)
            if prefix == "https":
                scheme = "https"
            elif prefix != "http":
                raise ClientConfigError(f"address {address!r}: unknown scheme {prefix!r} (use http, https or unix)")
        host, port = _split_host_port(text.rstrip("/"), address)
        return cls(scheme=scheme, host=host, port=port, token=token)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ClientConfig:
        """Build from ``CONSUL_*`` variables (``os.environ`` by default); empty values count as unset."""
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            return env.get(name) or None

        config = cls.from_address(get("CONSUL_HTTP_ADDR") or DEFAULT_ADDRESS, token=get("CONSUL_HTTP_TOKEN"))
        ssl_flag = get("CONSUL_HTTP_SSL")
        if ssl_flag is not None and parse_bool(ssl_flag, "CONSUL_HTTP_SSL"):
            config = replace(config, scheme="https")
        verify_flag = get("CONSUL_HTTP_SSL_VERIFY")
        cert_file = get("CONSUL_CLIENT_CERT")
        key_file = get("CONSUL_CLIENT_KEY")
        if key_file is not None and cert_file is None:
            raise ClientConfigError("CONSUL_CLIENT_KEY is set but CONSUL_CLIENT_CERT is not")
        return replace(
            config,
            verify=True if verify_flag is None else parse_bool(verify_flag, "CONSUL_HTTP_SSL_VERIFY"),
            ca_file=get("CONSUL_CACERT"),
            cert_file=cert_file,
            key_file=key_file,
        )

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS context for HTTPS: system CAs or ``ca_file``, optional client certificate."""
        try:
            context = ssl.create_default_context(cafile=self.ca_file)
            if not self.verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            if self.cert_file is not None:
                context.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ClientConfigError(f"cannot load TLS files: {exc}") from exc
        return context


def parse_bool(text: str, name: str) -> bool:
    """Go's ``strconv.ParseBool``, which Consul uses for its boolean variables."""
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ClientConfigError(f"{name}={text!r} is not a boolean (use true or false)")


def _split_host_port(text: str, address: str) -> tuple[str, int]:
    if not text or "/" in text:
        raise ClientConfigError(f"address {address!r}: expected host:port")
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ClientConfigError(f"address {address!r}: bad bracketed IPv6 host")
        has_port, port_text = bool(rest), rest[1:]
    elif text.count(":") > 1:
        raise ClientConfigError(f"address {address!r}: write IPv6 hosts in brackets, e.g. [::1]:8500")
    else:
        host, colon, port_text = text.partition(":")
        has_port = bool(colon)
    if not host:
        raise ClientConfigError(f"address {address!r}: missing host")
    if not has_port:
        return host, DEFAULT_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ClientConfigError(f"address {address!r}: bad port {port_text!r}")
    return host, int(port_text)


__all__ = ["DEFAULT_ADDRESS", "DEFAULT_PORT", "ClientConfig", "ClientConfigError", "parse_bool"]
