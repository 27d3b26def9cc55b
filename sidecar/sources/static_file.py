"""``--config FILE``: a snapshot from a YAML or JSON file, re-read when it changes or on SIGHUP.

The file is checked every ``poll_interval`` seconds (1 s) by its identity and content stamp
(device, inode, size, modification time in ns), so in-place edits and the atomic
write-then-rename editors and config tools use (a new inode at the same path) are both seen; a
SIGHUP re-reads at once. Content identical to the last applied one is not offered again.

A file that cannot be read or parsed, or that ``apply`` rejects, is a NACK: logged with the field
at fault (``clusters[0].lb.kind: unknown policy 'x'``), counted, and the last good snapshot stays.
A half-written file (an editor that truncates first) shows up as such a NACK and is followed by
the complete file on the next poll. The format is chosen by extension (``.json``; ``.yaml`` /
``.yml``), else by content. The version is the file's ``version`` key, else a content hash.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING

from mesh.model.parse import ConfigError, Format, content_version, parse_snapshot_text
from mesh.model.snapshot import Snapshot
from sidecar.security.tls_state import CERT_DIR_ENV
from sidecar.security.wiring import SidecarSecurity

if TYPE_CHECKING:
    from sidecar.security.files import CredentialFiles
from sidecar.sources.base import Apply, SourceStats, offer, reject

log = logging.getLogger(__name__)

Stamp = tuple[int, int, int, int]


class StaticFileSource:
    """Snapshots from one file; see the module doc. ``load()`` reads it once (for a fail-fast start)."""

    name = "file"

    def __init__(self, path: Path | str, *, poll_interval: float = 1.0, reload_on_sighup: bool = True) -> None:
        if poll_interval <= 0:
            raise ValueError("poll_interval must be > 0")
        self.path = Path(path)
        self.poll_interval = poll_interval
        self.reload_on_sighup = reload_on_sighup
        self.stats = SourceStats()
        self._applied_content: str | None = None  # content hash of the last accepted file
        self._wake = asyncio.Event()
        self._credentials: CredentialFiles | None = None

    def bind_credentials(self, security: SidecarSecurity) -> None:
        """Workload credentials from ``MESH_SIDECAR_CERT_DIR`` when set (``sidecar.security.files``)."""
        if not os.environ.get(CERT_DIR_ENV):
            return  # no mTLS material: the cryptography package is never loaded
        from sidecar.security.files import CredentialFiles

        self._credentials = CredentialFiles.from_env(security.tls)
        if self._credentials is not None:
            self._credentials.load()  # before the first snapshot, so mTLS listeners serve from the start

    def load(self) -> Snapshot:
        """Read and validate the file now; ``ConfigError`` naming the field (or the read error) if unusable."""
        return self._parse(self._read())

    def reload(self) -> None:
        """Ask a running source to re-read the file now (what SIGHUP does)."""
        self._wake.set()

    async def run(self, apply: Apply) -> None:
        loop = asyncio.get_running_loop()
        handler_installed = False
        if self.reload_on_sighup:
            try:
                loop.add_signal_handler(signal.SIGHUP, self.reload)
                handler_installed = True
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no signals here
                log.warning("SIGHUP reload is unavailable; the file is still polled")
        seen: Stamp | None = None
        missing_logged = False
        files = self._credentials
        credentials = loop.create_task(files.run()) if files is not None else None
        try:
            while True:
                forced = self._wake.is_set()
                self._wake.clear()
                stamp = await asyncio.to_thread(self._stamp)
                if stamp is None:
                    if not missing_logged:
                        log.error("config file %s is missing; keeping %s", self.path, self.stats.version or "no config")
                        missing_logged = True
                elif forced or stamp != seen:
                    missing_logged = False
                    seen = stamp
                    await self._reload(apply)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_interval)
        finally:
            if credentials is not None:
                credentials.cancel()
            if handler_installed:
                loop.remove_signal_handler(signal.SIGHUP)

    async def _reload(self, apply: Apply) -> None:
        try:
            raw = await asyncio.to_thread(self._read)
        except ConfigError as exc:
            reject(self.stats, log, "", str(exc))
            return
        content = content_version(raw)
        if content == self._applied_content:
            log.debug("config file %s unchanged (%s)", self.path, content)
            return
        try:
            snapshot = self._parse(raw)
        except ConfigError as exc:
            reject(self.stats, log, content, f"{self.path}: {exc}")
            return
        if offer(apply, snapshot, self.stats, log):
            self._applied_content = content

    def _read(self) -> bytes:
        try:
            return self.path.read_bytes()
        except OSError as exc:
            raise ConfigError("", f"cannot read {self.path}: {exc.strerror or exc}") from exc

    def _parse(self, raw: bytes) -> Snapshot:
        return parse_snapshot_text(raw, fmt=_format_of(self.path))

    def _stamp(self) -> Stamp | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _format_of(path: Path) -> Format | None:
    suffix = path.suffix.lower()
    if suffix == ".json":
        return "json"
    if suffix in (".yaml", ".yml"):
        return "yaml"
    return None


__all__ = ["StaticFileSource"]
