"""The SNI of real TLS ClientHellos (made by Python's ssl), and what is not one."""

from __future__ import annotations

import ssl

import pytest

from sidecar.tcp.sni import NEED_MORE, client_hello_sni


def client_hello(server_name: str | None) -> bytes:
    context = ssl.create_default_context()
    if server_name is None:
        context.check_hostname = False
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def test_the_server_name_of_a_client_hello() -> None:
    hello = client_hello("Shop.Example.com")
    assert client_hello_sni(hello) == "shop.example.com"
    assert client_hello_sni(hello + b"more bytes after it") == "shop.example.com"


def test_a_partial_hello_needs_more() -> None:
    hello = client_hello("a.example.com")
    for cut in (1, 4, 5, 40, len(hello) - 1):
        assert client_hello_sni(hello[:cut]) is NEED_MORE


def test_a_hello_split_over_two_records() -> None:
    hello = client_hello("split.example.com")
    body = hello[5:]
    first, second = body[:50], body[50:]
    records = b"\x16\x03\x01" + len(first).to_bytes(2, "big") + first
    records += b"\x16\x03\x01" + len(second).to_bytes(2, "big") + second
    assert client_hello_sni(records) == "split.example.com"


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00",  # a handshake, but not a ClientHello
        b"\x16\x03\x01\x00\x08\x01\x00\x00\x04\x03\x03\xff\xff",  # truncated inside the hello
        b"\x17\x03\x03\x00\x10" + b"x" * 16,  # application data
    ],
)
def test_not_a_usable_client_hello(data: bytes) -> None:
    assert client_hello_sni(data) is None


def test_a_hello_without_a_server_name() -> None:
    assert client_hello_sni(client_hello(None)) is None
