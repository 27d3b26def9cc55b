"""The registry: the catalog core made durable and observable.

Every write goes the same way: the catalog applies it (or refuses it whole),
the store makes it durable, then the watches of the topics it changed fire.
HTTP handlers and the health-check runner only ever write through here.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from discovery import metrics
from discovery.catalog import Catalog, ChangeSet, agent_serf_check
from discovery.models import Node
from discovery.store import Store


@dataclass(frozen=True, slots=True)
class AgentIdentity:
    """Who this registry is, as Consul's agent/self reports it."""

    node_name: str
    address: str
    datacenter: str = "dc1"
    version: str = "1.20.0"


class Registry:
    """Catalog + store; one instance per process."""

    def __init__(self, data_dir: Path, identity: AgentIdentity) -> None:
        self.identity = identity
        self.store = Store(data_dir / "registry.db")
        self.catalog = Catalog(agent_node=identity.node_name)
        self.store.on_batch = metrics.observe_commit_batch
        self.on_fatal: Callable[[BaseException], None] | None = None
        self._listeners: list[Callable[[ChangeSet], None]] = []

    async def open(self) -> None:
        records, index = await self.store.open()
        self.catalog.load(records, index)
        await self._ensure_agent_node()

    async def close(self) -> None:
        await self.store.close()

    @property
    def healthy(self) -> bool:
        return self.store.failure is None

    async def write(self, apply: Callable[[Catalog], ChangeSet]) -> ChangeSet:
        """Apply one write, wait until it is durable, then wake its watchers (just after returning).

        ``apply`` raises ``CatalogError`` to refuse; nothing is changed then.
        """
        change = apply(self.catalog)
        if not change.changed:
            # It may repeat (or read) a write that is applied but not yet durable: wait for it.
            await self.store.flush()
            return change
        try:
            await self.store.commit(change)
        except Exception as exc:
            # Memory is now ahead of disk: stop serving rather than answer from it.
            if self.on_fatal is not None:
                self.on_fatal(exc)
            raise
        metrics.WRITES.inc()
        # Watchers wake on the next loop turn, after this write's own answer: answering a
        # thousand of them takes tens of milliseconds the writer should not wait through.
        asyncio.get_running_loop().call_soon(self._publish, change)
        return change

    def _publish(self, change: ChangeSet) -> None:
        metrics.WATCHES_FIRED.inc(self.catalog.publish(change))
        for listener in self._listeners:
            listener(change)

    def add_listener(self, listener: Callable[[ChangeSet], None]) -> None:
        """Call ``listener`` with every durable change (in-process followers such as the check runner)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[ChangeSet], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    async def _ensure_agent_node(self) -> None:
        existing = self.catalog.node(self.identity.node_name)
        node = Node(
            name=self.identity.node_name,
            address=self.identity.address,
            id=existing.id if existing else str(uuid.uuid4()),
            datacenter=self.identity.datacenter,
            tagged_addresses={"lan": self.identity.address, "wan": self.identity.address},
            meta=existing.meta if existing else {"consul-network-segment": ""},
        )
        await self.write(lambda c: c.register_checks([agent_serf_check(node.name)], node=node))
