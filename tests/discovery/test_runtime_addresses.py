from __future__ import annotations

import pytest

from discovery.runtime.addresses import split_host_port


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1:8500", ("127.0.0.1", 8500)),
        ("[::1]:8500", ("::1", 8500)),
        (":8500", ("127.0.0.1", 8500)),
        ("example", ("example", 99)),
        ("[::1]", ("::1", 99)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
    ],
)
def test_spellings(address: str, expected: tuple[str, int]) -> None:
    assert split_host_port(address, 99) == expected


@pytest.mark.parametrize("address", ["host:99999", "host:x", "host:-1", "host:٣"])
def test_bad_ports_name_the_flag(address: str) -> None:
    with pytest.raises(ValueError, match="--http-addr: expected HOST:PORT"):
        split_host_port(address, 8500, name="--http-addr")


def test_a_port_is_required_without_a_default() -> None:
    with pytest.raises(ValueError, match="--outbound-addr: expected HOST:PORT, got '15001'"):
        split_host_port("15001", name="--outbound-addr")
