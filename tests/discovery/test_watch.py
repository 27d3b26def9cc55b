"""Watch loop rules, driven by a scripted fetch and a fake clock: no sockets, no real sleeps."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from discovery.client import RegistryClient
from discovery.client_models import (
    HealthServiceEntry,
    PermissionDenied,
    QueryResult,
    RegistryUnavailable,
)
from discovery.watch import TokenBucket, Watch

Step = QueryResult[str] | Exception


class FakeTime:
    """A monotonic clock that only moves when the code under test sleeps (or a fetch 'blocks')."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        self.now += delay
        await asyncio.sleep(0)


class Script:
    """A fetch that replays steps, records the index of each call, and takes ``hold`` fake seconds."""

    def __init__(self, time: FakeTime, steps: Sequence[Step], hold: float = 0.0) -> None:
        self.time = time
        self.steps = list(steps)
        self.hold = hold
        self.indexes: list[int] = []

    async def __call__(self, index: int) -> QueryResult[str]:
        self.indexes.append(index)
        self.time.now += self.hold
        step = self.steps.pop(0)
        if isinstance(step, Exception):
            raise step
        return step


def result(index: int, value: str = "v") -> QueryResult[str]:
    return QueryResult(index=index, value=value)


def unavailable() -> RegistryUnavailable:
    return RegistryUnavailable(0, "connection refused", "GET", "/v1/health/service/web")


def make_watch(time: FakeTime, script: Script, **options: Any) -> Watch[str]:
    options.setdefault("rand", lambda: 0.5)
    return Watch(script, sleep=time.sleep, clock=time.clock, **options)


async def take(watch: Watch[str], count: int) -> list[QueryResult[str]]:
    return [await anext(watch) for _ in range(count)]


# === index rules ===


async def test_first_call_is_non_blocking_then_blocks_on_last_index() -> None:
    time = FakeTime()
    script = Script(time, [result(7, "a"), result(9, "b")], hold=1.0)
    watch = make_watch(time, script)

    got = await take(watch, 2)

    assert [r.value for r in got] == ["a", "b"]
    assert script.indexes == [0, 7]
    assert watch.index == 9


async def test_spurious_wakeup_with_same_index_and_value_is_not_yielded() -> None:
    time = FakeTime()
    script = Script(time, [result(5, "a"), result(5, "a"), result(5, "a"), result(6, "b")], hold=1.0)

    got = await take(make_watch(time, script), 2)

    assert [(r.index, r.value) for r in got] == [(5, "a"), (6, "b")]
    assert script.indexes == [0, 5, 5, 5]


async def test_value_change_is_yielded_even_when_index_did_not_move() -> None:
    time = FakeTime()
    script = Script(time, [result(5, "a"), result(5, "b")], hold=1.0)

    got = await take(make_watch(time, script), 2)

    assert [r.value for r in got] == ["a", "b"]


async def test_index_move_with_same_value_is_yielded_by_default() -> None:
    time = FakeTime()
    script = Script(time, [result(5, "a"), result(8, "a")], hold=1.0)

    got = await take(make_watch(time, script), 2)

    assert [r.index for r in got] == [5, 8]


async def test_changes_only_skips_index_moves_without_a_new_value() -> None:
    time = FakeTime()
    script = Script(time, [result(5, "a"), result(8, "a"), result(9, "a"), result(10, "b")], hold=1.0)

    got = await take(make_watch(time, script, changes_only=True), 2)

    assert [(r.index, r.value) for r in got] == [(5, "a"), (10, "b")]
    assert script.indexes == [0, 5, 8, 9]


async def test_index_going_backwards_resets_to_zero() -> None:
    time = FakeTime()
    steps = [result(10, "a"), result(4, "b"), result(4, "b"), result(6, "c")]
    script = Script(time, steps, hold=1.0)

    got = await take(make_watch(time, script), 3)

    # The backwards answer carries new data (yielded); the reset re-read at index 0 does not.
    assert [(r.index, r.value) for r in got] == [(10, "a"), (4, "b"), (6, "c")]
    assert script.indexes == [0, 10, 0, 4]


async def test_backwards_index_with_unchanged_value_is_not_yielded() -> None:
    time = FakeTime()
    script = Script(time, [result(10, "a"), result(4, "a"), result(4, "a"), result(5, "b")], hold=1.0)

    got = await take(make_watch(time, script), 2)

    assert [(r.index, r.value) for r in got] == [(10, "a"), (5, "b")]
    assert script.indexes == [0, 10, 0, 4]


@pytest.mark.parametrize("bad_index", [0, -3])
async def test_non_positive_index_is_replaced_by_one(bad_index: int) -> None:
    time = FakeTime()
    script = Script(time, [result(bad_index, "a"), result(3, "b")], hold=1.0)
    watch = make_watch(time, script)

    got = await take(watch, 2)

    assert [r.value for r in got] == ["a", "b"]
    assert script.indexes == [0, 1]


# === rate limiting ===


async def test_server_answering_instantly_forever_is_rate_limited() -> None:
    time = FakeTime()
    # Same index and value every time: nothing is ever yielded, the loop must still pace itself.
    script = Script(time, [result(1, "a")] * 41)
    watch = make_watch(time, script, min_interval=0.5)
    assert (await anext(watch)).value == "a"
    consumer = asyncio.create_task(anext(watch))

    for _ in range(1000):
        if not script.steps:
            break
        await asyncio.sleep(0)
    assert not consumer.done()
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await consumer

    calls = len(script.indexes)
    assert calls == 41
    # burst 2 are free, every later request waited for a token
    assert time.now >= (calls - 2) * 0.5
    assert all(delay == pytest.approx(0.5) for delay in time.sleeps)


async def test_bucket_refills_while_queries_block() -> None:
    time = FakeTime()
    script = Script(time, [result(i, str(i)) for i in range(1, 11)], hold=30.0)

    await take(make_watch(time, script, min_interval=1.0), 10)

    assert time.sleeps == []


async def test_changes_arriving_quickly_are_paced_after_the_burst() -> None:
    time = FakeTime()
    script = Script(time, [result(i, str(i)) for i in range(1, 6)])

    got = await take(make_watch(time, script, min_interval=0.25), 5)

    assert [r.index for r in got] == [1, 2, 3, 4, 5]
    assert time.sleeps == pytest.approx([0.25, 0.25, 0.25])


def test_min_interval_must_be_positive() -> None:
    time = FakeTime()
    with pytest.raises(ValueError, match="min_interval"):
        make_watch(time, Script(time, []), min_interval=0)


def test_token_bucket_reserves_ahead_and_refills_up_to_burst() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=2.0, burst=2, clock=lambda: now[0])

    assert [bucket.reserve(), bucket.reserve()] == [0.0, 0.0]
    assert bucket.reserve() == pytest.approx(0.5)
    assert bucket.reserve() == pytest.approx(1.0)  # queued behind the previous reservation
    now[0] = 100.0
    assert [bucket.reserve(), bucket.reserve()] == [0.0, 0.0]  # capped at burst, not 200 tokens
    assert bucket.reserve() == pytest.approx(0.5)


# === errors and backoff ===


async def test_errors_back_off_exponentially_with_full_jitter_then_reset() -> None:
    time = FakeTime()
    steps: list[Step] = [result(1, "a")]
    steps += [unavailable() for _ in range(4)]
    steps += [result(2, "b"), unavailable(), result(3, "c")]
    script = Script(time, steps, hold=10.0)  # holds keep the bucket full: only backoff sleeps
    jitter = iter([0.5, 0.5, 0.5, 0.5, 0.25])
    watch = make_watch(time, script, rand=lambda: next(jitter), backoff_base=1.0, backoff_cap=30.0)

    assert (await anext(watch)).value == "a"
    assert (await anext(watch)).value == "b"
    assert time.sleeps == [0.5, 1.0, 2.0, 4.0]
    assert watch.failures == 0
    assert isinstance(watch.last_error, RegistryUnavailable)

    assert (await anext(watch)).value == "c"
    assert time.sleeps[4:] == [0.25]  # the streak restarted at the base delay
    assert script.indexes == [0, 1, 1, 1, 1, 1, 2, 2]  # errors keep the index


async def test_backoff_is_capped_and_survives_long_outages() -> None:
    time = FakeTime()
    failures = 1100  # 2**1100 would overflow a float without the exponent cap
    script = Script(time, [*(unavailable() for _ in range(failures)), result(1, "a")], hold=10.0)
    watch = make_watch(time, script, rand=lambda: 0.999, backoff_base=0.5, backoff_cap=30.0)

    assert (await anext(watch)).value == "a"
    assert len(time.sleeps) == failures
    assert max(time.sleeps) <= 30.0
    assert time.sleeps[-1] == pytest.approx(0.999 * 30.0)


async def test_zero_jitter_errors_still_never_busy_loop() -> None:
    time = FakeTime()
    script = Script(time, [*(unavailable() for _ in range(10)), result(1, "a")])
    watch = make_watch(time, script, rand=lambda: 0.0, min_interval=1.0)

    assert (await anext(watch)).value == "a"
    assert time.now == pytest.approx(9.0)  # 11 requests, 2 free, 9 paced by the bucket


async def test_registry_errors_of_any_status_are_retried() -> None:
    time = FakeTime()
    denied = PermissionDenied(403, "ACL not found", "GET", "/v1/health/service/web")
    script = Script(time, [denied, result(1, "a")], hold=1.0)
    watch = make_watch(time, script)

    assert (await anext(watch)).value == "a"
    assert watch.last_error is denied


async def test_other_exceptions_propagate() -> None:
    time = FakeTime()
    script = Script(time, [result(1, "a"), KeyError("bug")], hold=1.0)
    watch = make_watch(time, script)

    await anext(watch)
    with pytest.raises(KeyError):
        await anext(watch)


# === cancellation and closing ===


async def test_cancelling_a_blocked_consumer_leaves_the_watch_resumable() -> None:
    time = FakeTime()
    release = asyncio.Event()
    indexes: list[int] = []

    async def fetch(index: int) -> QueryResult[str]:
        indexes.append(index)
        if index == 0:
            return result(3, "a")
        await release.wait()
        return result(4, "b")

    watch = Watch(fetch, sleep=time.sleep, clock=time.clock)
    assert (await anext(watch)).value == "a"

    consumer = asyncio.create_task(anext(watch))
    await asyncio.sleep(0)
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await consumer

    release.set()
    assert (await anext(watch)).value == "b"
    assert indexes == [0, 3, 3]


async def test_cancelling_during_backoff_stops_cleanly() -> None:
    slept = asyncio.Event()

    async def never_returning_sleep(delay: float) -> None:
        slept.set()
        await asyncio.Event().wait()

    async def fetch(index: int) -> QueryResult[str]:
        raise unavailable()

    watch = Watch(fetch, sleep=never_returning_sleep)
    consumer = asyncio.create_task(anext(watch))
    await slept.wait()
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await consumer
    assert watch.failures == 1


async def test_async_for_ends_after_aclose() -> None:
    time = FakeTime()
    script = Script(time, [result(i, str(i)) for i in range(1, 10)], hold=1.0)
    seen: list[str] = []

    async with make_watch(time, script) as watch:
        async for update in watch:
            seen.append(update.value)
            if len(seen) == 3:
                await watch.aclose()

    assert seen == ["1", "2", "3"]
    assert len(script.indexes) == 3
    with pytest.raises(StopAsyncIteration):
        await anext(watch)


async def test_result_arriving_after_aclose_is_dropped() -> None:
    release = asyncio.Event()

    async def fetch(index: int) -> QueryResult[str]:
        await release.wait()
        return result(1, "late")

    watch = Watch(fetch)
    consumer = asyncio.create_task(anext(watch))
    await asyncio.sleep(0)
    await watch.aclose()
    release.set()
    with pytest.raises(StopAsyncIteration):
        await consumer


# === client convenience ===


async def test_client_watch_binds_the_blocking_read(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, ...]] = []
    client = RegistryClient("http://127.0.0.1:1")

    async def fake_health_service(
        name: str, passing: bool, tags: Sequence[str], **kwargs: Any
    ) -> QueryResult[list[HealthServiceEntry]]:
        calls.append((name, passing, tuple(tags), kwargs))
        return QueryResult(index=12, value=[])

    monkeypatch.setattr(client, "health_service", fake_health_service)
    watch = client.watch_health_service("web", tags=["v1"], wait=30.0)

    first = await anext(watch)

    assert first.index == 12
    assert calls == [("web", True, ("v1",), {"index": 0, "wait": 30.0, "consistency": None})]
    await client.close()
