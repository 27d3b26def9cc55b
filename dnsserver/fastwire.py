"""Bytes of fast-path replies: record sets, their per-query order, names, and the message.

Everything here writes exactly what ``wire.pack_message`` / ``wire.finish`` write for the answer
core's dnslib objects (tests/dnsserver/test_fastpath.py compares the two byte for byte): header,
the question as received, answers owned by the question name (pointer 0xC00C), the SOA in
Authority for NXDOMAIN/NODATA, SRV targets' addresses in Additional with owner names compressed as
dnslib does, then the OPT RR when the query had one. Too large: drop Additional (keep OPT) without
TC; still too large: set TC, empty Authority, keep the longest prefix of answers that fits.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from dnsserver import wire
from dnsserver.answers_base import IPAddress, _address_rdata, shuffled
from dnsserver.wire import HEADER, TC_FLAG

TYPE_A: Final = 1
TYPE_SOA: Final = 6
TYPE_PTR: Final = 12
TYPE_AAAA: Final = 28
TYPE_SRV: Final = 33
_RR_FIXED = struct.Struct("!HHIH")  # type, class, ttl, rdlength
_SRV_FIXED = struct.Struct("!HHH")
_SOA_TIMES = struct.Struct("!IIIII")
_OWNER_IS_QNAME: Final = b"\xc0\x0c"  # compression pointer to the question name (offset 12)
# name exists, answer records, the Additional section's bytes and its record count
Found = tuple[bool, list[bytes], bytes, int]
SrvEntry = tuple[int, int, tuple[bytes, ...], bytes, bytes]  # weight, port, target, packed address, rdata


@dataclass(frozen=True, slots=True)
class RecordSet:
    """What a name answers for one type, before the per-query shuffle (computed once per view).

    ``exists`` False: NXDOMAIN. ``records``: answer records owned by the question name (pointer
    0xC00C), in the core's order before its shuffle; none: NODATA. SRV sets also carry each
    record's target (an index) and the Additional records (target index, owner name, record after
    the owner) in the core's order, sorted per query by where their targets landed.
    """

    exists: bool
    records: tuple[bytes, ...] = ()
    targets: tuple[int, ...] = ()
    extra: tuple[tuple[int, tuple[bytes, ...], bytes], ...] = ()


NO_NAME: Final = RecordSet(False)
NO_RECORDS: Final = RecordSet(True)
_INDEXES: Final = tuple(tuple(range(n)) for n in range(65))


def address_rdata(ip: IPAddress) -> bytes:
    """A/AAAA rdata bytes exactly as ``wire.pack_message`` writes the core's rdata object."""
    return bytes(_address_rdata(ip).data)


def order(records: RecordSet, rng: random.Random) -> Sequence[int]:
    """This query's order of ``records.records``: the core's shuffle, with the same draws."""
    n = len(records.records)
    return shuffled(rng, _INDEXES[n] if n < len(_INDEXES) else tuple(range(n)))


def additional_section(
    records: RecordSet, order: Sequence[int], labels: tuple[bytes, ...], question: bytes, answers_len: int
) -> bytes:
    """The Additional records of an SRV set in this order, after ``question`` and ``answers_len`` bytes of answers.

    Sorted by where their targets landed (a target's last place, as the core's dict), owner names
    compressed against the question and each other as dnslib does.
    """
    targets = records.targets
    position = {targets[i]: place for place, i in enumerate(order)}
    data = bytearray(wire.HEADER_LEN)
    names = question_names(data, labels, question)
    data += bytes(answers_len)  # only the offsets of what follows matter
    start = len(data)
    for _, owner, tail in sorted(records.extra, key=lambda item: position[item[0]]):
        wire._encode_name(data, names, owner)
        data += tail
    return bytes(data[start:])


def question_names(data: bytearray, labels: tuple[bytes, ...], question: bytes) -> dict[tuple[bytes, ...], int]:
    """Append the question to ``data`` (a bare header) and return the compression table it leaves.

    The table ``wire._encode_name`` would leave: every suffix of the question name at its offset
    (the first name in a message has nothing to point at, so it is written out in full).
    """
    names: dict[tuple[bytes, ...], int] = {}
    pos = len(data)
    for i, label in enumerate(labels):
        names[labels[i:]] = pos
        pos += 1 + len(label)
    data += question
    return names


def address_set(found: list[tuple[bytes, bytes]], qtype: int, ttl: int) -> RecordSet:
    """``answers_base.address_records`` for one type, before its shuffle: A or AAAA records, deduplicated.

    ``found`` holds (packed address, rdata) pairs; the packed form's length tells the family and
    its equality is the addresses' equality (scoped IPv6 addresses never get here: see ``_member``).
    Other types get no records (NODATA).
    """
    if qtype == TYPE_A:
        size = 4
    elif qtype == TYPE_AAAA:
        size = 16
    else:
        return NO_RECORDS
    unique: dict[bytes, bytes] = {}
    for key, rdata in found:
        if len(key) == size and key not in unique:
            unique[key] = rdata
    prefix = _OWNER_IS_QNAME + _RR_FIXED.pack(qtype, 1, ttl, size)
    return RecordSet(True, tuple(prefix + r for r in unique.values()))


def srv_set(entries: Iterable[SrvEntry], priority: int, weigh: Callable[[int], int] | None, ttl: int) -> RecordSet:
    """``answers_base.SrvBuilder`` before its shuffle: SRV records, their targets and Additional.

    ``entries``: (weight, port, target, packed address or b"", rdata) in the core's ``add`` order;
    ``weigh``: None keeps each record's weight, else a function of the record count gives them all one.
    """
    keys: dict[tuple[int, int, tuple[bytes, ...]], None] = {}
    extra: dict[tuple[tuple[bytes, ...], bytes], bytes] = {}  # (target, packed address) -> rdata
    for weight, port, target, key, rdata in entries:
        keys[(max(0, min(weight, 65535)), port, target)] = None
        if key:
            extra.setdefault((target, key), rdata)
    common = None if weigh is None else weigh(len(keys))
    ids: dict[tuple[bytes, ...], int] = {}
    records, targets = [], []
    for weight, port, target in keys:
        rdata = _SRV_FIXED.pack(priority, weight if common is None else common, port) + plain_name(target)
        records.append(_OWNER_IS_QNAME + _RR_FIXED.pack(TYPE_SRV, 1, ttl, len(rdata)) + rdata)
        targets.append(ids.setdefault(target, len(ids)))
    additional = tuple(
        (ids[target], target, _RR_FIXED.pack(TYPE_A if len(key) == 4 else TYPE_AAAA, 1, ttl, len(rdata)) + rdata)
        for (target, key), rdata in extra.items()
    )
    return RecordSet(True, tuple(records), tuple(targets), additional)


def ptr_records(
    labels: tuple[bytes, ...], question: bytes, names: tuple[tuple[bytes, ...], ...], ttl: int
) -> tuple[bytes, ...]:
    """PTR records right after ``question``: targets compressed against it and each other, as dnslib does."""
    data = bytearray(wire.HEADER_LEN)
    table = question_names(data, labels, question)
    answers = []
    for name in names:
        start = len(data)
        data += _OWNER_IS_QNAME + _RR_FIXED.pack(TYPE_PTR, 1, ttl, 0)
        rdata_at = len(data)
        wire._encode_name(data, table, name)
        struct.pack_into("!H", data, rdata_at - 2, len(data) - rdata_at)
        answers.append(bytes(data[start:]))
    return tuple(answers)


def plain_name(labels: tuple[bytes, ...]) -> bytes:
    """An uncompressed wire name (SRV targets are never compressed, RFC 2782)."""
    return b"".join(bytes([len(label)]) + label for label in labels) + b"\x00"


def assemble(
    qid: int,
    flags: int,
    question: bytes,
    answers: list[bytes],
    authority: bytes,
    additional: bytes,
    additional_count: int,
    opt: bytes,
    max_size: int,
) -> bytes:
    """The message, with ``wire.finish``'s size rules (see the module doc)."""
    arcount = 1 if opt else 0
    body = b"".join(answers)
    nscount = 1 if authority else 0
    fixed = wire.HEADER_LEN + len(question) + len(body) + len(authority) + len(opt)
    if additional and fixed + len(additional) <= max_size:
        header = HEADER.pack(qid, flags, 1, len(answers), nscount, additional_count + arcount)
        return header + question + body + authority + additional + opt
    if fixed <= max_size:
        return HEADER.pack(qid, flags, 1, len(answers), nscount, arcount) + question + body + authority + opt
    room = max_size - (wire.HEADER_LEN + len(question) + len(opt))
    kept = 0
    for record in answers:  # every record's bytes depend only on the ones before it
        room -= len(record)
        if room < 0:
            break
        kept += 1
    return HEADER.pack(qid, flags | TC_FLAG, 1, kept, 0, arcount) + question + b"".join(answers[:kept]) + opt


def soa_record(
    labels: tuple[bytes, ...],
    question: bytes,
    origin_len: int,
    ttl: int,
    mname: tuple[bytes, ...],
    rname: tuple[bytes, ...],
    times: tuple[int, ...],
) -> bytes:
    """The zone SOA record right after ``question``, owned by its last ``origin_len`` labels (as spelled)."""
    data = bytearray(wire.HEADER_LEN)
    names = question_names(data, labels, question)
    start = len(data)
    wire._encode_name(data, names, labels[len(labels) - origin_len :])
    data += _RR_FIXED.pack(TYPE_SOA, 1, ttl, 0)
    rdata_at = len(data)
    wire._encode_name(data, names, mname)
    wire._encode_name(data, names, rname)
    data += _SOA_TIMES.pack(*times)
    struct.pack_into("!H", data, rdata_at - 2, len(data) - rdata_at)
    return bytes(data[start:])
