"""The relay's rules with fake transports: half-close, backpressure, idle timeout, close."""

from __future__ import annotations

import asyncio
from typing import cast

from sidecar.tcp.relay import Relay


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.eof_written = False
        self.closed = False
        self.aborted = False
        self.reading = True

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof_written = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True


def make(idle: float = 0.0) -> tuple[Relay, FakeTransport, FakeTransport]:
    down, up = FakeTransport(), FakeTransport()
    relay = Relay(cast(asyncio.Transport, down), cast(asyncio.Transport, up), idle_timeout_s=idle, now=0.0)
    return relay, down, up


def test_bytes_flow_both_ways_and_are_counted() -> None:
    relay, down, up = make()
    relay.from_downstream(b"ping")
    relay.from_upstream(b"pong!")
    assert up.written == [b"ping"]
    assert down.written == [b"pong!"]
    assert (relay.bytes_down_to_up, relay.bytes_up_to_down) == (4, 5)


def test_half_close_passes_eof_and_keeps_the_other_direction() -> None:
    relay, down, up = make()
    assert relay.downstream_eof() is True  # keep the client transport open for our writes
    assert up.eof_written
    assert not up.closed
    relay.from_upstream(b"late answer")
    assert down.written == [b"late answer"]
    assert relay.upstream_eof() is False  # both directions done
    assert relay.closed
    assert down.closed
    assert up.closed


def test_backpressure_pauses_the_other_side() -> None:
    relay, down, up = make()
    relay.upstream_write_paused()
    assert not down.reading
    relay.upstream_write_resumed()
    assert down.reading
    relay.downstream_write_paused()
    assert not up.reading
    relay.downstream_write_resumed()
    assert up.reading


def test_idle_relay_closes_after_the_timeout() -> None:
    relay, down, up = make(idle=10.0)
    assert not relay.idle_check(5.0)
    relay.from_downstream(b"x")
    assert not relay.idle_check(9.0)  # traffic since the last check: idle clock restarts at 9
    assert not relay.idle_check(18.0)
    assert relay.idle_check(19.5)
    assert down.closed
    assert up.closed


def test_a_reset_closes_both() -> None:
    relay, down, up = make()
    relay.upstream_lost()
    assert relay.closed
    assert down.closed
    assert up.closed
    relay.from_downstream(b"ignored")
    assert up.written == []
