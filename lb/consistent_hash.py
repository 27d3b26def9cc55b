"""What ring hash and Maglev share: a table of owners looked up by a 64-bit hash of the request key.

- No hash key: a random candidate (Envoy does the same).
- A key equal to a candidate's session token (``endpoint_token``, the value of generated affinity
  cookies) goes straight to that candidate; see lb/affinity.py.
- Retry with the owner excluded: walk forward from the key's slot to the next owner that is not
  excluded, so a key's fallback endpoint is itself consistent across proxies.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence

from lb.base import BalancerBase, BuildInputs
from lb.endpoint import NO_HINTS, Endpoint, PickContext
from lb.hashing import endpoint_token


class ConsistentHashBalancer(BalancerBase):
    def __init__(
        self, endpoints: Sequence[Endpoint], candidates: tuple[Endpoint, ...], in_panic: bool, inputs: BuildInputs
    ) -> None:
        super().__init__(endpoints, candidates, in_panic, inputs)
        self._random = inputs.rng.random
        self._count = len(candidates)
        self._tokens = {endpoint_token(e.key).encode(): e for e in candidates}

    @abstractmethod
    def _lookup(self, key: bytes) -> Endpoint:
        """The owner of ``key``: ``_owner_at(_slot(key))``, written out inline (it runs per request)."""

    @abstractmethod
    def _slot(self, key: bytes) -> int:
        """The ring point / table slot that owns ``key``."""

    @abstractmethod
    def _owner_at(self, slot: int) -> Endpoint:
        """The endpoint owning a ring point / table slot."""

    @property
    @abstractmethod
    def slot_count(self) -> int:
        """Ring points or table slots."""

    def pick(self, ctx: PickContext = NO_HINTS) -> Endpoint | None:
        key = ctx.hash_key
        if key is None or ctx.exclude:
            return BalancerBase.pick(self, ctx)
        # The common case written out, one call less: a hash key and nothing excluded.
        pinned = self._tokens.get(key)
        return pinned if pinned is not None else self._lookup(key)

    def _choose(self, ctx: PickContext) -> Endpoint:
        key = ctx.hash_key
        if key is None:
            return self.candidates[int(self._random() * self._count)]
        pinned = self._tokens.get(key)
        if pinned is not None:
            return pinned
        return self._lookup(key)

    def _choose_avoiding(self, ctx: PickContext, exclude: frozenset[str]) -> Endpoint:
        key = ctx.hash_key
        if key is None:
            allowed = self._allowed(exclude)
            return self.candidates[allowed[int(self._random() * len(allowed))]]
        size = self.slot_count
        start = self._slot(key)
        for step in range(1, size):
            owner = self._owner_at((start + step) % size)
            if owner.key not in exclude:
                return owner
        # Only when some candidate owns no slot at all (Maglev with more endpoints than slots).
        return self.candidates[self._allowed(exclude)[0]]
