"""Redirects and authority rewrites (Envoy ``RedirectAction`` / ``host_rewrite_literal``,
Istio ``redirect`` / ``rewrite.authority``), pure.

``redirect_location`` builds the ``Location`` of a redirect route's answer from the request's
URL, replacing the parts the route names:

- scheme: ``redirect.scheme``, else the request's (``http`` on a plain listener);
- host: ``redirect.host``, else the request's ``Host`` name; port: ``redirect.port``, else the
  request's port when the host is kept, and no port when ``redirect.host`` replaced it; a port
  that is the scheme's default (80/443) is left out;
- path: ``redirect.path`` replaces it whole; ``redirect.prefix_rewrite`` replaces the route's
  matched ``prefix`` (or the whole ``path``, as ``prefix_rewrite`` of a forwarding route);
- the query string stays unless ``strip_query``.

The answer is ``redirect.response_code`` with that ``Location`` and an empty body (Envoy).
Header edits (Istio ``headers.request/response`` set/add/remove) are the route's
``request_headers_*`` / ``response_headers_*`` fields, applied by the proxy itself
(``sidecar.active.encode_adds``); nothing here duplicates them.
"""

from __future__ import annotations

from mesh.model.policies import Redirect
from mesh.model.snapshot import RouteMatch

_DEFAULT_PORTS = {"http": 80, "https": 443}


def split_host(authority: str) -> tuple[str, int | None]:
    """``"api:8080"`` → ("api", 8080); ``"[::1]:80"`` → ("[::1]", 80); no port → None."""
    if authority.startswith("["):
        end = authority.find("]")
        if end > 0:
            rest = authority[end + 1 :]
            port = int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
            return authority[: end + 1], port
    name, sep, port_text = authority.rpartition(":")
    if sep and name and port_text.isdigit():
        return name, int(port_text)
    return authority, None


def redirected_path(redirect: Redirect, match: RouteMatch, path: str) -> str:
    """The path part of the ``Location``."""
    if redirect.path is not None:
        return redirect.path
    if redirect.prefix_rewrite is not None:
        # As a forwarding route's prefix_rewrite (mesh.model.routing.rewrite_path).
        if match.path_prefix is not None:
            return redirect.prefix_rewrite + path[len(match.path_prefix) :]
        if match.path_exact is not None:
            return redirect.prefix_rewrite
        return redirect.prefix_rewrite + path
    return path


def redirect_location(
    redirect: Redirect, match: RouteMatch, *, scheme: str, authority: str, path: str, query: str
) -> str:
    """The ``Location`` header value for a request (``path`` without its query, ``query`` without ``?``)."""
    out_scheme = redirect.scheme or scheme
    host, port = split_host(authority)
    if redirect.host is not None:
        host, port = redirect.host, None
    if redirect.port is not None:
        port = redirect.port
    if redirect.scheme is not None and redirect.port is None and port == _DEFAULT_PORTS.get(scheme):
        port = None  # switching scheme: the old scheme's default port does not carry over
    if port is not None and port == _DEFAULT_PORTS.get(out_scheme):
        port = None
    location = f"{out_scheme}://{host}" + (f":{port}" if port is not None else "")
    location += redirected_path(redirect, match, path)
    if query and not redirect.strip_query:
        location += "?" + query
    return location


def rewritten_host(host_rewrite: str | None, host: str) -> str:
    """The ``Host`` sent upstream: the route's ``host_rewrite`` when set, else the client's."""
    return host_rewrite if host_rewrite is not None else host


__all__ = ["redirect_location", "redirected_path", "rewritten_host", "split_host"]
