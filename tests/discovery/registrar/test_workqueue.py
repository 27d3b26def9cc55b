"""KeyedWorkQueue and the locks: serialization per key, coalescing, no starvation."""

from __future__ import annotations

import asyncio

from discovery.registrar.locks import KeyedLocks, SharedExclusiveLock
from discovery.registrar.workqueue import Job, KeyedWorkQueue


async def test_one_run_per_key_at_a_time_and_bursts_coalesce() -> None:
    runs: list[tuple[str, bool]] = []
    gate = asyncio.Event()
    active: set[str] = set()

    async def run(key: str, job: Job) -> None:
        assert key not in active
        active.add(key)
        runs.append((key, job.sync))
        await gate.wait()
        active.discard(key)

    queue = KeyedWorkQueue(run, concurrency=4)
    first = queue.submit("a")
    await asyncio.sleep(0)
    burst = [queue.submit("a", sync=(i == 3)) for i in range(5)]  # arrive while "a" runs
    other = queue.submit("b")
    await asyncio.sleep(0.01)
    gate.set()
    await asyncio.gather(first, *burst, other)
    assert runs.count(("a", False)) == 1
    assert runs.count(("a", True)) == 1
    assert ("b", False) in runs
    assert queue.busy == 0


async def test_concurrency_limit_and_errors_do_not_stop_the_queue() -> None:
    running = 0
    peak = 0

    async def run(key: str, job: Job) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1
        if key == "bad":
            raise RuntimeError("boom")

    queue = KeyedWorkQueue(run, concurrency=2)
    await asyncio.gather(*(queue.submit(k) for k in ["bad", "a", "b", "c", "d"]))
    assert peak == 2
    assert await queue.drain(1.0)


async def test_merged_jobs_keep_the_earliest_event_time_and_latest_hint() -> None:
    seen: list[Job] = []
    release = asyncio.Event()

    async def run(key: str, job: Job) -> None:
        seen.append(job)
        await release.wait()

    queue = KeyedWorkQueue(run)
    first = queue.submit("k", event_ns=5, hint="start")
    await asyncio.sleep(0)
    queue.submit("k", event_ns=9, hint="die")
    queue.submit("k", event_ns=7, hint="destroy")
    release.set()
    await first
    await queue.drain(1)
    assert (seen[1].event_ns, seen[1].hint) == (7, "destroy")
    # the first run answered its start alone; the second answers two events (the start fast path needs one)
    assert (seen[0].submissions, seen[1].submissions) == (1, 2)
    await queue.close()
    done = queue.submit("k")
    assert done.done()


async def test_shared_exclusive_lock() -> None:
    lock = SharedExclusiveLock()
    order: list[str] = []
    in_shared = asyncio.Event()
    release_shared = asyncio.Event()

    async def shared(name: str) -> None:
        async with lock.shared():
            order.append(f"{name}+")
            in_shared.set()
            await release_shared.wait()
            order.append(f"{name}-")

    async def exclusive() -> None:
        async with lock.exclusive():
            order.append("X")

    s1 = asyncio.create_task(shared("s1"))
    await in_shared.wait()
    x = asyncio.create_task(exclusive())
    await asyncio.sleep(0)
    s2 = asyncio.create_task(shared("s2"))  # arrives after the exclusive waiter: must wait behind it
    await asyncio.sleep(0.01)
    assert order == ["s1+"]
    release_shared.set()
    await asyncio.gather(s1, x, s2)
    assert order == ["s1+", "s1-", "X", "s2+", "s2-"]


async def test_cancelled_exclusive_waiter_releases_shared_holders() -> None:
    lock = SharedExclusiveLock()
    hold = asyncio.Event()

    async def holder() -> None:
        async with lock.shared():
            await hold.wait()

    h = asyncio.create_task(holder())
    await asyncio.sleep(0)

    async def exclusive() -> None:
        async with lock.exclusive():
            pass

    x = asyncio.create_task(exclusive())
    await asyncio.sleep(0)
    x.cancel()
    await asyncio.gather(x, return_exceptions=True)
    async with asyncio.timeout(1):
        async with lock.shared():
            pass
    hold.set()
    await h


async def test_keyed_locks_serialize_one_key_and_forget_unused_ones() -> None:
    locks = KeyedLocks()
    order: list[str] = []

    async def use(key: str, tag: str) -> None:
        async with locks.hold(key):
            order.append(f"{tag}+")
            await asyncio.sleep(0.01)
            order.append(f"{tag}-")

    await asyncio.gather(use("a", "1"), use("a", "2"), use("b", "3"))
    assert order.index("1-") < order.index("2+")
    assert order.index("3+") < order.index("1-")  # another key does not wait
    assert len(locks) == 0
