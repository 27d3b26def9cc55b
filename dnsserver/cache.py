"""Answer cache: finished wire replies for our zones, valid for one ``RegistryView.version``.

Two maps point at the same answers:

- by *key*: ``cache_key(...)``, the normalised question as bytes: the lower-cased wire name, then
  qtype, qclass, query flags, transport, EDNS payload (0 without EDNS) and DO, packed (RFC 4343:
  names compare case-insensitively; the length-prefixed name makes the concatenation unambiguous).
  A hit for a name spelled in another case (0x20 randomisation) serves the cached bytes with the
  question patched back to the client's spelling.
- by *raw*: the query packet minus its ID (``packet[2:]``), per transport. The handler's hot path
  is one lookup here, then the ID is patched in: no parsing at all. Only queries of ≤ 512 bytes are
  remembered raw, so keys stay small. Raw bytes determine the reply completely (the normalised key
  is a function of them), so a raw hit is always correct.

Insertion is lazy ("raw on second sight"): a miss stores its answer by *key* only, and as a
*first-sight stub*: one ``bytes`` object, a tag byte (which builder makes more shuffles, see
``CacheEntry.lazy``) followed by the reply without its ID. Keys and stubs are plain bytes, which
the garbage collector does not track, so a flood of unique names (every query a miss) leaves no
collectable objects behind (per-miss entry objects made the young generation fill and be
collected every few hundred misses, ~1 µs per miss) and costs one dict insert (and its share of
eviction) per query. The first repeat of a question finds the stub, turns it into a ``CacheEntry``
(``promote``; the handler supplies its metrics series and variant builder) and adds the raw key,
after which every hit is the raw hot path, unchanged. Never-repeated names do not crowd the raw
map, where the repeated ones live.

Answers are shuffled per query by the answer core; to keep that while serving bytes, an entry
holds up to ``VARIANTS`` replies built with different shuffles, served round-robin. Variants are
built lazily, so a miss costs one build, not ``VARIANTS``: the miss serves the first variant, and
each of the next ``VARIANTS - 1`` hits builds one more shuffle (``CacheEntry.more``) and serves
it, so the first hits already see fresh orders. A new variant equal to one already held (likely
for two records) is dropped and that hit is served round-robin instead; after the last build the
builder is released and a hit is a dict lookup, an index step and the ID patch.

Truncated UDP replies are cached like any other: the key includes the transport and the EDNS
payload size, so the same bytes are the right answer for every query with that key (CoreDNS does
not cache them because its key has no size in it).

Bounds: each map holds at most ``max_entries``; inserting into a full map evicts its oldest
eighth (dicts keep insertion order), so a flood of unique names cannot grow memory, and popular
names come back after one rebuild. A new view version replaces both maps (O(1)).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from itertools import islice
from typing import Final, TypeVar

from dnsserver.metrics import Series

VARIANTS: Final = 4
MAX_RAW_KEY: Final = 510  # raw keys are packet[2:], so queries up to 512 bytes
CacheKey = bytes
_K = TypeVar("_K")
_V = TypeVar("_V")
_KEY_TAIL = struct.Struct("!HHH?H?")  # qtype, qclass, flags, tcp, payload, DO
_TAGS: Final = tuple(bytes([lazy]) for lazy in range(256))
log = logging.getLogger(__name__)


def cache_key(qname_lower: bytes, qtype: int, qclass: int, flags: int, tcp: bool, payload: int, do: bool) -> CacheKey:
    """The normalised-question key: ``payload`` is the EDNS payload in use, 0 without EDNS."""
    return qname_lower + _KEY_TAIL.pack(qtype, qclass, flags, tcp, payload, do)


class CacheEntry:
    """Finished replies without their 2-byte ID, served in turn; more are built lazily by ``more``."""

    __slots__ = ("index", "lazy", "more", "pending", "qname", "series", "variants")

    def __init__(
        self,
        variants: tuple[bytes, ...],
        qname: bytes,
        series: Series,
        more: Callable[[], bytes] | None = None,
        lazy: int = 0,
    ) -> None:
        self.variants = variants  # each is reply[2:]; the question name starts at offset 10
        self.qname = qname  # the question name as spelled in these bytes
        self.series = series
        self.index = 0
        # ``more()`` builds another shuffle (reply[2:]); called on at most ``pending`` later hits.
        self.more = more
        self.pending = VARIANTS - len(variants) if more is not None or lazy else 0
        # Nonzero: more variants are wanted but ``more`` is not attached yet; the owner (the handler)
        # says which builder with this tag and attaches it on the first hit (see the module doc).
        self.lazy = lazy

    def take(self) -> bytes:
        if self.more is not None:
            return self._grow()
        variants = self.variants
        if len(variants) == 1:
            return variants[0]
        self.index = i = (self.index + 1) % len(variants)
        return variants[i]

    def _grow(self) -> bytes:
        """Build one more variant and serve it (or the next old one, if it repeats an order)."""
        assert self.more is not None
        self.pending -= 1
        try:
            fresh = self.more()
        except Exception:  # never fail a hit that has good bytes: stop growing, serve what we have
            log.exception("building another DNS answer variant")
            fresh = self.variants[0]
            self.pending = 0
        if self.pending <= 0:
            self.more = None  # release the view and query the builder holds
        variants = self.variants
        if fresh not in variants:
            self.variants = (*variants, fresh)
            self.index = len(variants)
            return fresh
        self.index = i = (self.index + 1) % len(variants)
        return variants[i]

    def respelled(self, qname: bytes) -> CacheEntry:
        """A copy whose question name is spelled ``qname`` (same name, other case)."""
        n = len(qname)
        variants = tuple(v[:10] + qname + v[10 + n :] for v in self.variants)
        return CacheEntry(variants, qname, self.series)


class AnswerCache:
    def __init__(self, max_entries: int = 10_000) -> None:
        if max_entries < 8:
            raise ValueError("max_entries must be at least 8")
        self.max_entries = max_entries
        self.version = -1
        self.udp_raw: dict[bytes, CacheEntry] = {}
        self.tcp_raw: dict[bytes, CacheEntry] = {}
        self._by_key: dict[CacheKey, CacheEntry | bytes] = {}

    def __len__(self) -> int:
        return len(self._by_key)

    def reset(self, version: int) -> None:
        """Forget everything; the cache now holds answers for ``version``."""
        self.version = version
        self.udp_raw = {}
        self.tcp_raw = {}
        self._by_key = {}

    def get(self, key: CacheKey) -> CacheEntry | bytes | None:
        """The entry, or a first-sight stub (``bytes``: pass it to ``promote``), or None."""
        return self._by_key.get(key)

    def put(self, key: CacheKey, entry: CacheEntry) -> None:
        self._insert(self._by_key, key, entry)

    def put_first(self, key: CacheKey, reply: bytes, lazy: int = 0) -> None:
        """Store a miss's ``reply`` (with its ID) as a first-sight stub; ``lazy`` as in ``CacheEntry``."""
        self._insert(self._by_key, key, _TAGS[lazy] + reply[2:])

    def promote(self, key: CacheKey, stub: bytes, qname_length: int, series: Series) -> CacheEntry:
        """Replace ``stub`` (found by ``get(key)``) by its entry; ``qname_length``: its question name's length."""
        entry = CacheEntry((stub[1:],), stub[11 : 11 + qname_length], series, lazy=stub[0])
        if key in self._by_key:  # keeps its place in the eviction order
            self._by_key[key] = entry
        return entry

    @staticmethod
    def stub_rcode(stub: bytes) -> int:
        """RCODE of the reply in a first-sight stub (the header's low 4 bits)."""
        return stub[2] & 0x0F

    def remember_raw(self, raw: bytes, tcp: bool, entry: CacheEntry) -> None:
        """Let the hot path find ``entry`` by the query bytes (``packet[2:]``)."""
        if len(raw) <= MAX_RAW_KEY:
            self._insert(self.tcp_raw if tcp else self.udp_raw, raw, entry)

    def _insert(self, table: dict[_K, _V], key: _K, entry: _V) -> None:
        if len(table) >= self.max_entries and key not in table:
            for old in list(islice(table, max(1, self.max_entries // 8))):
                del table[old]
        table[key] = entry
