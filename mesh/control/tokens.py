"""The control plane's credentials, shared by its server, the ``mesh`` CLI and the sidecar (stdlib only).

Two secrets (docs/security.md, "Protected control paths"):

- the **token** (``mesh control --token`` / ``--token-file``, ``MESH_CONTROL_TOKEN`` /
  ``MESH_CONTROL_TOKEN_FILE``): one shared bootstrap secret that writes and sidecar registration
  need, sent as ``Authorization: Bearer <token>`` or ``X-Mesh-Token``;
- a **sidecar secret**: random, made by the control plane when a sidecar registers, returned to
  that sidecar once and kept only as a SHA-256 digest; the sidecar sends it
  (``X-Mesh-Sidecar-Secret``) on everything about its own registration (sync, ACK, demand,
  deregistration, CA signing).

As in Consul, a token file is read once, its surrounding whitespace stripped, and it wins over a
token given directly (Consul's ``-token-file`` is used "instead of" ``-token``).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Final

TOKEN_ENV: Final = "MESH_CONTROL_TOKEN"
TOKEN_FILE_ENV: Final = "MESH_CONTROL_TOKEN_FILE"
TOKEN_HEADER: Final = "X-Mesh-Token"
SECRET_HEADER: Final = "X-Mesh-Sidecar-Secret"
SECRET_BYTES: Final = 32  # 256 random bits: a plain hash is enough to store it (nothing to brute-force)


class TokenError(ValueError):
    """A token file that cannot be used."""


def read_token_file(path: str | Path, name: str = "--token-file") -> str:
    """The token in ``path``, whitespace stripped; ``TokenError`` names ``name`` when it is unreadable or empty."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenError(f"{name}: cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from exc
    token = text.strip()
    if not token:
        raise TokenError(f"{name}: {path} holds no token")
    if any(c.isspace() or not c.isprintable() for c in token):
        raise TokenError(f"{name}: the token in {path} must be one word (no spaces or control characters)")
    return token


def resolve_token(token: str | None, token_file: str | Path | None, file_name: str = "--token-file") -> str:
    """The token to use ("" for none): the file's when one is given, else ``token`` stripped."""
    if token_file:
        return read_token_file(token_file, file_name)
    text = (token or "").strip()
    if any(c.isspace() or not c.isprintable() for c in text):
        raise TokenError("the control plane token must be one word (no spaces or control characters)")
    return text


def token_from_env(environ: Mapping[str, str] | None = None) -> str:
    """``MESH_CONTROL_TOKEN_FILE`` (read once) or ``MESH_CONTROL_TOKEN``; "" when neither is set."""
    env = os.environ if environ is None else environ
    return resolve_token(env.get(TOKEN_ENV), env.get(TOKEN_FILE_ENV) or None, TOKEN_FILE_ENV)


def cli_token(token: str) -> str | None:
    """The token a CLI command hands its client: as Consul's ``-token-file``, ``MESH_CONTROL_TOKEN_FILE``
    wins over a token given directly (None: the client reads the file)."""
    return None if os.environ.get(TOKEN_FILE_ENV) else token or None


def auth_headers(token: str, secret: str = "") -> dict[str, str]:
    """The headers that carry ``token`` (and a sidecar's ``secret``); empty ones are left out."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if secret:
        headers[SECRET_HEADER] = secret
    return headers


def new_sidecar_secret() -> tuple[str, bytes]:
    """A fresh sidecar secret and the digest the control plane keeps instead of it."""
    secret = secrets.token_urlsafe(SECRET_BYTES)
    return secret, secret_digest(secret)


def secret_digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def tokens_match(presented: str, expected: str) -> bool:
    """Constant-time comparison (``hmac.compare_digest``), so timing does not reveal how much matched."""
    return hmac.compare_digest(presented.encode(), expected.encode())


def secret_matches(presented: str, digest: bytes) -> bool:
    return bool(presented) and bool(digest) and hmac.compare_digest(secret_digest(presented), digest)


def redact(text: str, *secrets_: str) -> str:
    """``text`` with every non-empty secret in it replaced by ``<redacted>`` (for logs and dumps)."""
    for secret in secrets_:
        if secret:
            text = text.replace(secret, "<redacted>")
    return text


__all__ = [
    "SECRET_HEADER",
    "TOKEN_ENV",
    "TOKEN_FILE_ENV",
    "TOKEN_HEADER",
    "TokenError",
    "auth_headers",
    "new_sidecar_secret",
    "read_token_file",
    "redact",
    "resolve_token",
    "secret_digest",
    "secret_matches",
    "token_from_env",
    "tokens_match",
]
