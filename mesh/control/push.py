"""Computing each sidecar's snapshot and waking its long poll when it changes.

Sidecars with the same **profile** (service, namespace, labels, bootstrap, hosts asked for) get
the same snapshot, computed and serialized once. Work is marked, not done, when something
happens: a rules change marks every profile, a registry change marks the profiles that read
that service, a registration or a new host marks one profile. One task does the marked work in
rounds, ``coalesce`` seconds after the first mark, so a burst (an apply that touches many
services, a flapping health check) becomes one round.

A round translates the marked profiles, starts the registry watches they need (one per service
across all sidecars) and gives new ones a moment (``first_answer_timeout``) to answer, then
compares each result's content digest with what its sidecars hold: identical snapshots are not
re-sent. A changed one gets version ``<config version>.<digest>`` and wakes the long polls of
every sidecar of that profile.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from mesh.control import metrics
from mesh.control.sidecars import ProfileKey, Registration, Rendered, SidecarRecord
from mesh.control.state import ConfigState
from mesh.control.translate import Profile, RoundCache, Translation, snapshot_digest, translate
from mesh.control.watches import ServiceWatches

log = logging.getLogger("mesh.control.push")


@dataclass(eq=False)
class _ProfileEntry:
    key: ProfileKey
    profile: Profile
    sidecars: set[str] = field(default_factory=set)
    rendered: Rendered | None = None
    services: frozenset[str] = frozenset()
    config_version: int = -1
    dirty: bool = True


class Pusher:
    def __init__(
        self,
        state: Callable[[], ConfigState],
        watches: ServiceWatches,
        *,
        coalesce: float = 0.002,
        first_answer_timeout: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._state = state
        self.watches = watches
        self._coalesce = coalesce
        self._first_answer_timeout = first_answer_timeout
        self._clock = clock
        self.sidecars: dict[str, SidecarRecord] = {}
        self._profiles: dict[ProfileKey, _ProfileEntry] = {}
        self._work = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.rounds = 0
        self.pushes = 0  # snapshots that changed for a profile (each wakes its sidecars)

    # === events ===

    def register(self, registration: Registration) -> SidecarRecord:
        record = self.sidecars.get(registration.sidecar_id)
        if record is None:
            record = SidecarRecord(registration, self._clock())
            self.sidecars[record.id] = record
        else:
            record.registration = registration
            for name in registration.demanded:
                record.add_demand(name)
        record.seen(self._clock())
        self._place(record)
        return record

    def forget(self, sidecar_id: str) -> bool:
        record = self.sidecars.pop(sidecar_id, None)
        if record is None:
            return False
        self._leave(record)
        record.wake.set()  # a parked poll returns (and finds the sidecar gone)
        return True

    def demand(self, record: SidecarRecord, name: str) -> bool:
        """The sidecar's app asked for ``name``; True if it is new for this sidecar."""
        if not record.add_demand(name):
            return False
        self._place(record)
        return True

    def rules_changed(self) -> None:
        for entry in self._profiles.values():
            entry.dirty = True
        self._mark()

    def service_changed(self, name: str) -> None:
        hit = False
        for entry in self._profiles.values():
            if name in entry.services:
                entry.dirty = True
                hit = True
        if hit:
            self._mark()

    def ack(self, record: SidecarRecord, version: str, error: str | None) -> None:
        now = time.time()
        if error:
            record.last_nack = (version, now, error)
            log.warning("sidecar %s rejected %s: %s", record.id, version, error, extra={"sidecar": record.id})
        else:
            record.applied_version = version
            record.last_ack = (version, now)
        record.seen(self._clock())

    # === the work loop ===

    async def run(self) -> None:
        while True:
            await self._work.wait()
            if self._coalesce > 0:
                await asyncio.sleep(self._coalesce)
            self._work.clear()
            started = time.perf_counter()
            try:
                await self._round()
            except Exception:  # a bug in one round must not stop pushes for good
                log.exception("snapshot computation failed")
            metrics.ROUND_SECONDS.observe(time.perf_counter() - started)
            if not self._work.is_set():
                self._idle.set()

    async def settled(self, timeout: float) -> bool:
        """Wait until no marked work is left (at most ``timeout``); True if so."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)
        return self._idle.is_set()

    async def translate_for(self, profile: Profile) -> Translation:
        """A one-off translation (``explain`` of a source with no sidecar), with its watches started."""
        translation = translate(profile, self._state().rules, self.watches.catalog)
        if translation.pending:
            self.watches.want(self.needed_services() | translation.services)
            await self.watches.answered(translation.pending, self._first_answer_timeout)
            translation = translate(profile, self._state().rules, self.watches.catalog)
        return translation

    async def _round(self) -> None:
        self.rounds += 1
        state = self._state()
        dirty = [entry for entry in self._profiles.values() if entry.dirty]
        for entry in dirty:
            entry.dirty = False
        results: dict[ProfileKey, Translation] = {}
        pending: set[str] = set()
        cache = RoundCache()
        for entry in dirty:
            translation = translate(entry.profile, state.rules, self.watches.catalog, cache)
            results[entry.key] = translation
            entry.services = translation.services
            pending |= translation.pending
        self.watches.want(self.needed_services())
        if pending:
            await self.watches.answered(pending, self._first_answer_timeout)
            state = self._state()
            cache = RoundCache()  # the catalog (maybe the rules) changed meanwhile
            for entry in dirty:
                if results[entry.key].pending:
                    results[entry.key] = translate(entry.profile, state.rules, self.watches.catalog, cache)
                    entry.services = results[entry.key].services
        for entry in dirty:
            if self._profiles.get(entry.key) is entry:
                self._publish(entry, results[entry.key], state.version)

    def _publish(self, entry: _ProfileEntry, translation: Translation, config_version: int) -> None:
        digest, data = snapshot_digest(translation.snapshot)
        entry.config_version = config_version
        if entry.rendered is not None and entry.rendered.digest == digest:
            entry.rendered = Rendered(entry.rendered.version, digest, translation, entry.rendered.body)
            for sidecar_id in entry.sidecars:
                self.sidecars[sidecar_id].config_version = config_version
            return
        version = f"{config_version}.{digest}"
        data = {"version": version, **data}
        body = json.dumps(
            {"version": version, "config_version": config_version, "snapshot": data}, separators=(",", ":")
        ).encode()
        entry.rendered = Rendered(version, digest, translation, body)
        self.pushes += 1
        metrics.PUSHES.inc()
        for sidecar_id in entry.sidecars:
            record = self.sidecars[sidecar_id]
            record.current = entry.rendered
            record.config_version = config_version
            record.wake.set()

    # === profiles ===

    def _place(self, record: SidecarRecord) -> None:
        """Put the sidecar in the entry for its (possibly new) profile."""
        key = record.profile_key()
        entry = self._profiles.get(key)
        if entry is not None and record.id in entry.sidecars:
            return
        self._leave(record)
        if entry is None:
            entry = _ProfileEntry(key, record.profile())
            self._profiles[key] = entry
            self._mark()
        entry.sidecars.add(record.id)
        if entry.rendered is not None:
            record.current = entry.rendered
            record.config_version = entry.config_version
            record.wake.set()

    def _leave(self, record: SidecarRecord) -> None:
        for key, entry in list(self._profiles.items()):
            if record.id in entry.sidecars:
                entry.sidecars.discard(record.id)
                if not entry.sidecars:
                    del self._profiles[key]

    def needed_services(self) -> set[str]:
        """Every registry service some profile reads."""
        needed: set[str] = set()
        for entry in self._profiles.values():
            needed |= entry.services
        return needed

    def _mark(self) -> None:
        self._idle.clear()
        self._work.set()


__all__ = ["Pusher"]
