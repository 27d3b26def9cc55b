"""A small blocking client of the control plane's config API, for the ``mesh`` CLI (stdlib only).

Errors come back as ``ControlApiError`` carrying the API's JSON (``error``, ``path``,
``resource``, ``document``), so the CLI can print them with the field named. The control plane's
token (``MESH_CONTROL_TOKEN`` / ``MESH_CONTROL_TOKEN_FILE``, or ``token=``) goes out as
``Authorization: Bearer``, never in the URL.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from mesh.control.tokens import TokenError, auth_headers, token_from_env

DEFAULT_CONTROL_ADDR = "http://127.0.0.1:15010"


def control_address(address: str | None = None) -> str:
    """``address``, else ``MESH_CONTROL_ADDR``, else the default; ``host:port`` gets ``http://``."""
    text = (address or os.environ.get("MESH_CONTROL_ADDR") or DEFAULT_CONTROL_ADDR).strip().rstrip("/")
    return text if "://" in text else f"http://{text}"


@dataclass
class ControlApiError(Exception):
    status: int
    error: str
    details: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        parts = []
        resource = self.details.get("resource")
        if resource:
            parts.append(str(resource))
        elif self.details.get("document") is not None:
            parts.append(f"document {self.details['document']}")
        path = self.details.get("path")
        if path:
            parts.append(str(path))
        prefix = ": ".join(parts)
        return f"{prefix}: {self.error}" if prefix else self.error


class ControlClient:
    def __init__(self, address: str | None = None, *, token: str | None = None, timeout: float = 30.0) -> None:
        """``token=None``: ``MESH_CONTROL_TOKEN_FILE`` or ``MESH_CONTROL_TOKEN`` (a bad file: ``ControlApiError``)."""
        self.address = control_address(address)
        self.timeout = timeout
        try:
            self._headers = auth_headers(token_from_env() if token is None else token.strip())
        except TokenError as exc:
            raise ControlApiError(0, str(exc)) from exc

    def apply(
        self, body: bytes, *, dry_run: bool = False, namespace: str = "", content_type: str = ""
    ) -> dict[str, Any]:
        params = {"dry_run": "true"} if dry_run else {}
        if namespace:
            params["namespace"] = namespace
        return self._call("PUT", "/v1/mesh/config", params, body, content_type or _sniff(body))

    def list(self, kind: str | None = None, namespace: str | None = None) -> dict[str, Any]:
        params = {k: v for k, v in (("kind", kind), ("namespace", namespace)) if v}
        return self._call("GET", "/v1/mesh/config", params)

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/mesh/config/{_seg(kind)}/{_seg(namespace)}/{_seg(name)}")

    def delete(self, kind: str, namespace: str, name: str, *, dry_run: bool = False) -> dict[str, Any]:
        params = {"dry_run": "true"} if dry_run else {}
        return self._call("DELETE", f"/v1/mesh/config/{_seg(kind)}/{_seg(namespace)}/{_seg(name)}", params)

    def status(self) -> dict[str, Any]:
        return self._call("GET", "/v1/mesh/status")

    def explain(self, params: dict[str, str]) -> dict[str, Any]:
        return self._call("GET", "/v1/mesh/explain", params)

    def topology(self) -> dict[str, Any]:
        return self._call("GET", "/v1/mesh/topology")

    def services(self) -> dict[str, Any]:
        return self._call("GET", "/v1/mesh/services")

    def _call(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None = None,
        body: bytes | None = None,
        content_type: str = "",
    ) -> dict[str, Any]:
        url = self.address + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        request = urllib.request.Request(url, data=body, method=method, headers=self._headers)
        if content_type:
            request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                data = response.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                details = json.loads(raw)
            except ValueError:
                details = {"error": raw.decode("utf-8", "replace") or exc.reason}
            if not isinstance(details, dict):
                details = {"error": str(details)}
            raise ControlApiError(exc.code, str(details.get("error", exc.reason)), details) from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ControlApiError(0, f"cannot reach the control plane at {self.address}: {reason}") from exc
        result = json.loads(data) if data else {}
        if not isinstance(result, dict):
            raise ControlApiError(0, f"unexpected answer from {url}")
        return result


def _seg(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def _sniff(body: bytes) -> str:
    return "application/json" if body.lstrip().startswith((b"{", b"[")) else "application/yaml"


__all__ = ["DEFAULT_CONTROL_ADDR", "ControlApiError", "ControlClient", "control_address"]
