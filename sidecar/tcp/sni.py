"""The server name (SNI) in a TLS ClientHello, read without terminating TLS (pure, no sockets).

``client_hello_sni(data)`` takes the first bytes a client sent and answers the lower-cased
server name, ``None`` when the bytes are not a TLS ClientHello or carry no server name (decided),
or ``NEED_MORE`` while the ClientHello is not complete yet (it may span several TLS records).
Every length is checked against what is there: malformed input is ``None``, never an exception.
"""

from __future__ import annotations

from typing import Final

HANDSHAKE: Final = 0x16
CLIENT_HELLO: Final = 1
SERVER_NAME: Final = 0
HOST_NAME: Final = 0
MAX_HELLO: Final = 64 * 1024  # beyond this the client is not sending a ClientHello we can use


class NeedMore:
    __slots__ = ()


NEED_MORE: Final = NeedMore()


def client_hello_sni(data: bytes) -> str | NeedMore | None:
    handshake = bytearray()
    pos = 0
    while True:
        if len(data) < pos + 5:
            return NEED_MORE
        if data[pos] != HANDSHAKE or data[pos + 1] != 3:
            return None
        length = int.from_bytes(data[pos + 3 : pos + 5], "big")
        if len(data) < pos + 5 + length:
            return NEED_MORE if pos + 5 + length <= MAX_HELLO else None
        handshake += data[pos + 5 : pos + 5 + length]
        pos += 5 + length
        if len(handshake) >= 4:
            if handshake[0] != CLIENT_HELLO:
                return None
            size = int.from_bytes(handshake[1:4], "big")
            if size > MAX_HELLO:
                return None
            if len(handshake) >= 4 + size:
                return _server_name(bytes(handshake[4 : 4 + size]))


def _server_name(hello: bytes) -> str | None:
    pos = 2 + 32  # client version, random
    if len(hello) < pos + 1:
        return None
    pos += 1 + hello[pos]  # session id
    if len(hello) < pos + 2:
        return None
    pos += 2 + int.from_bytes(hello[pos : pos + 2], "big")  # cipher suites
    if len(hello) < pos + 1:
        return None
    pos += 1 + hello[pos]  # compression methods
    if len(hello) < pos + 2:
        return None
    end = min(len(hello), pos + 2 + int.from_bytes(hello[pos : pos + 2], "big"))
    pos += 2
    while pos + 4 <= end:
        kind = int.from_bytes(hello[pos : pos + 2], "big")
        size = int.from_bytes(hello[pos + 2 : pos + 4], "big")
        body = hello[pos + 4 : pos + 4 + size]
        pos += 4 + size
        if kind == SERVER_NAME and len(body) >= 2:
            at = 2
            while at + 3 <= len(body):
                name_type = body[at]
                name_len = int.from_bytes(body[at + 1 : at + 3], "big")
                name = body[at + 3 : at + 3 + name_len]
                at += 3 + name_len
                if name_type == HOST_NAME and name and len(name) == name_len:
                    try:
                        return name.decode("ascii").lower()
                    except UnicodeDecodeError:
                        return None
            return None
    return None


__all__ = ["NEED_MORE", "NeedMore", "client_hello_sni"]
