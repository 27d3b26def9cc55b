"""Stable 64-bit hashing shared by the hashing policies and session affinity.

Why blake2b (digest_size 8..64): it is in the standard library, runs in C, is stable across
processes and machines (unlike ``hash()``, which is salted per process), and is uniformly
distributed, which ring and table balance depend on. ``zlib.crc32`` is faster but only 32 bits wide
and clusters on similar inputs (``"10.0.0.1:80"``, ``"10.0.0.2:80"``). One blake2b call of 64 bytes
yields eight ring points, which keeps ring building cheap.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Iterator
from hashlib import blake2b

_U64 = struct.Struct("<Q")
_TWO_U64 = struct.Struct("<2Q")
_TOKEN_PERSON = b"mesh-aff"  # separates token hashes from ring hashes of the same key


def hash64(data: bytes) -> int:
    """A 64-bit hash of a request's hash key."""
    return _U64.unpack(blake2b(data, digest_size=8).digest())[0]  # type: ignore[no-any-return]


def hash_pair(key: str) -> tuple[int, int]:
    """Two independent 64-bit hashes of an endpoint key (Maglev's offset and skip)."""
    first, second = _TWO_U64.unpack(blake2b(key.encode(), digest_size=16).digest())
    return first, second


def ring_point_blocks(key: str) -> Iterator[bytes]:
    """An endless sequence of 64-byte digests of an endpoint key: eight 64-bit ring points each.

    An endpoint's points are always a prefix of this sequence, so giving it more points only adds
    points: the rest of the ring stays where it was.
    """
    prefix = key.encode() + b"_"
    for block in itertools.count():
        yield blake2b(prefix + str(block).encode(), digest_size=64).digest()


def endpoint_token(key: str) -> str:
    """An opaque, stable token naming an endpoint: the value of generated session-affinity cookies.

    16 hex digits; it hides the endpoint's address from clients, as a hash of it does in Envoy.
    """
    return blake2b(key.encode(), digest_size=8, person=_TOKEN_PERSON).hexdigest()
