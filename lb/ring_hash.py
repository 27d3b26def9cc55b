"""Ring hash (ketama-style consistent hashing): each endpoint owns points on a ring of hashes.

A key belongs to the first point at or after its hash. Removing one of N equal endpoints moves only
the keys of its points, about 1/N, to the points that follow; every other key stays.

Points per endpoint: ``P * weight / mean weight``, with P = 160 per endpoint (ketama's count) raised
to reach ``ring_min_size`` and lowered to stay within ``ring_max_size`` (Envoy's knobs). Sizing
from the mean weight, not the total as Envoy does, keeps an endpoint's point count unchanged when
another of equal weight leaves, so only the leaver's keys move. An endpoint's points are a prefix of
one endless hash sequence of its key: a count change only adds or drops points of that endpoint.

Building is per-point work in Python, so it is done on whole 64-byte digests (eight points) at a
time: each 64-bit lane keeps its low 56 hash bits (top byte zero), which makes its bit pattern a
finite positive IEEE double whose order is the order of the integers, and carries the owner's
index in its lowest bits. The ring is then one list of floats (Python sorts and bisects floats
fastest), and the owner of a point is read back from the same bits through a uint64 view. A
request key's position is a 7-byte blake2b digest read the same way.
"""

from __future__ import annotations

import math
import struct
import sys
from array import array
from bisect import bisect_left
from collections.abc import Sequence
from hashlib import blake2b

from lb.base import BuildInputs
from lb.consistent_hash import ConsistentHashBalancer
from lb.endpoint import Endpoint
from lb.hashing import ring_point_blocks

POINTS_PER_ENDPOINT = 160
_POINTS_PER_BLOCK = 8
_REPEAT = sum(1 << (64 * k) for k in range(_POINTS_PER_BLOCK))  # a value copied into all 8 lanes
_POSITION_BITS = (1 << 56) - 1
_U64 = struct.Struct("<Q")
_F64 = struct.Struct("<d")


def ring_point_counts(weights: Sequence[int], min_size: int, max_size: int) -> list[int]:
    """How many ring points each endpoint gets."""
    count = len(weights)
    per_endpoint = max(POINTS_PER_ENDPOINT, math.ceil(min_size / count))
    per_endpoint = max(1, min(per_endpoint, max_size // count))
    mean = sum(weights) / count
    counts = [max(1, round(per_endpoint * w / mean)) for w in weights]
    if sum(counts) > max_size:  # only when weights are so uneven that rounding up to 1 point overflows the cap
        scale = max_size / sum(counts)
        counts = [max(1, int(c * scale)) for c in counts]
    return counts


def ring_position(point: int) -> float:
    """A 64-bit ring point as a position on the ring (its low 56 bits, as an ordered double)."""
    return _F64.unpack(_U64.pack(point & _POSITION_BITS))[0]  # type: ignore[no-any-return]


def key_position(key: bytes) -> float:
    """Where a request key falls on the ring: a 56-bit blake2b hash, as an ordered double."""
    return _F64.unpack(blake2b(key, digest_size=7).digest() + b"\x00")[0]  # type: ignore[no-any-return]


class RingHash(ConsistentHashBalancer):
    kind = "ring_hash"

    def __init__(
        self, endpoints: Sequence[Endpoint], candidates: tuple[Endpoint, ...], in_panic: bool, inputs: BuildInputs
    ) -> None:
        super().__init__(endpoints, candidates, in_panic, inputs)
        spec = inputs.spec
        counts = ring_point_counts([e.weight for e in candidates], spec.ring_min_size, spec.ring_max_size)
        owner_bits = max(1, (len(candidates) - 1).bit_length())
        self._owner_mask = (1 << owner_bits) - 1
        keep = (_POSITION_BITS & ~self._owner_mask) * _REPEAT
        raw = bytearray()
        for index, (endpoint, points) in enumerate(zip(candidates, counts, strict=True)):
            lanes = index * _REPEAT
            blocks = ring_point_blocks(endpoint.key)
            for _ in range(points // _POINTS_PER_BLOCK):
                raw += ((int.from_bytes(next(blocks), "little") & keep) | lanes).to_bytes(64, "little")
            if rest := points % _POINTS_PER_BLOCK:
                raw += ((int.from_bytes(next(blocks), "little") & keep) | lanes).to_bytes(64, "little")[: 8 * rest]
        positions = array("d")
        positions.frombytes(bytes(raw))
        if sys.byteorder == "big":
            positions.byteswap()  # the lanes were written little-endian
        ring = positions.tolist()
        ring.sort()
        ordered = array("d", ring)
        # Fresh float objects in ring order: after the sort the list points at objects scattered in
        # memory, and a bisect would miss the cache on nearly every probe of a large ring.
        self._ring = ordered.tolist()
        self._point_bits = memoryview(ordered).cast("B").cast("Q")  # the same points as uint64
        self._size = len(ring)

    def _lookup(self, key: bytes) -> Endpoint:
        slot = bisect_left(self._ring, _F64.unpack(blake2b(key, digest_size=7).digest() + b"\x00")[0])
        if slot == self._size:
            slot = 0
        return self.candidates[self._point_bits[slot] & self._owner_mask]

    def _slot(self, key: bytes) -> int:
        slot = bisect_left(self._ring, key_position(key))
        return slot if slot < self._size else 0  # past the last point: wrap to the first

    def _owner_at(self, slot: int) -> Endpoint:
        return self.candidates[self._point_bits[slot] & self._owner_mask]

    @property
    def slot_count(self) -> int:
        return self._size
