"""Maglev consistent hashing (Eisenbud et al., NSDI 2016), weighted as in Envoy.

Each endpoint has a permutation of the table's slots, ``(offset + j * skip) mod M`` with offset and
skip from two hashes of its key; M is prime, so every skip reaches every slot. Endpoints take turns
claiming their next free preferred slot until the table is full; a lookup is ``table[hash % M]``.
Equal weights get ``M / N`` slots each, give or take one, and removing one endpoint of N moves
little more than its own 1/N of the keys. Weights: an endpoint takes a turn only on rounds where
``round * weight`` reaches its next target (targets step by the largest weight), so it claims
slots in proportion to its weight (Envoy's weighted Maglev).

Building fills M slots with about M ln M probes in total: the table is built once per update.
"""

from __future__ import annotations

from collections.abc import Sequence

from lb.base import BuildInputs
from lb.consistent_hash import ConsistentHashBalancer
from lb.endpoint import Endpoint
from lb.hashing import hash64, hash_pair


def maglev_table(keys: Sequence[str], weights: Sequence[int], size: int) -> list[int]:
    """The slot -> endpoint index table; ``size`` must be prime."""
    count = len(keys)
    positions: list[int] = []
    skips: list[int] = []
    for key in keys:
        first, second = hash_pair(key)
        positions.append(first % size)
        skips.append(second % (size - 1) + 1)
    table = [-1] * size
    targets = [0] * count
    largest = max(weights)
    filled = 0
    turn = 0
    while True:
        turn += 1
        for index in range(count):
            if turn * weights[index] < targets[index]:
                continue  # a lighter endpoint sits out some rounds
            targets[index] += largest
            position = positions[index]
            skip = skips[index]
            while table[position] >= 0:
                position += skip
                if position >= size:
                    position -= size
            table[position] = index
            position += skip
            positions[index] = position - size if position >= size else position
            filled += 1
            if filled == size:
                return table


class Maglev(ConsistentHashBalancer):
    kind = "maglev"

    def __init__(
        self, endpoints: Sequence[Endpoint], candidates: tuple[Endpoint, ...], in_panic: bool, inputs: BuildInputs
    ) -> None:
        super().__init__(endpoints, candidates, in_panic, inputs)
        size = inputs.spec.maglev_table_size
        table = maglev_table([e.key for e in candidates], [e.weight for e in candidates], size)
        self._owners = [candidates[i] for i in table]
        self._size = size

    def _lookup(self, key: bytes) -> Endpoint:
        return self._owners[hash64(key) % self._size]

    def _slot(self, key: bytes) -> int:
        return hash64(key) % self._size

    def _owner_at(self, slot: int) -> Endpoint:
        return self._owners[slot]

    @property
    def slot_count(self) -> int:
        return self._size
