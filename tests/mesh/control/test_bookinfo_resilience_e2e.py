"""Bookinfo resilience tasks end to end with the rule files of ``examples/bookinfo/``: fault
injection (delay, abort), circuit breaking and mirroring, through a real control plane, a real
productpage sidecar fed by it, and real backends on loopback (``tests.mesh.control.bookinfo``).

Fault percentages are checked against binomial bounds (4 standard deviations: a false failure
about once in 15,000 runs), never against exact counts.
"""

from __future__ import annotations

import asyncio

from tests.mesh.control.bookinfo import Bookinfo, bookinfo
from tests.mesh.control.test_bookinfo_e2e import within_binomial

__all__ = ["bookinfo"]

JASON = {"end-user": "jason"}


async def ratings(mesh: Bookinfo) -> None:
    await mesh.backend("ratings", "v1")
    await mesh.call("ratings")  # the app's first call makes the sidecar ask for ratings
    await mesh.apply("destination-rule-all.yaml")


async def test_fault_delay_holds_half_of_jasons_requests_for_the_fixed_delay(bookinfo: Bookinfo) -> None:
    await ratings(bookinfo)
    await bookinfo.apply("virtual-service-ratings-test-delay.yaml")  # jason: 50 % delayed by 1 s
    n = 200
    # Four rounds of 50 at once: 200 concurrent calls from this process could themselves take a
    # second on a loaded machine and pass for delayed ones.
    answers = [a for _ in range(4) for a in await bookinfo.calls("ratings", n // 4, headers=JASON)]
    assert {(a.status, a.backend) for a in answers} == {(200, "ratings-v1")}  # delayed, never failed
    delayed = [a for a in answers if a.elapsed >= 1.0]
    assert within_binomial(len(delayed), n, 50), len(delayed)
    others = await bookinfo.calls("ratings", 20, headers={"end-user": "kim"})
    assert all(a.status == 200 and a.elapsed < 1.0 for a in others)  # not jason: no fault


async def test_fault_abort_answers_half_of_jasons_requests_without_reaching_ratings(bookinfo: Bookinfo) -> None:
    await ratings(bookinfo)
    await bookinfo.apply("virtual-service-ratings-test-abort.yaml")  # jason: 50 % aborted with 500
    backend = bookinfo.backends["ratings-v1"]
    before = len(backend.seen)
    n = 400
    answers = [a for _ in range(4) for a in await bookinfo.calls("ratings", n // 4, headers=JASON)]
    aborted = [a for a in answers if a.status == 500]
    assert within_binomial(len(aborted), n, 50), len(aborted)
    assert {a.body.strip() for a in aborted} == {"fault filter abort"}
    assert {a.backend for a in answers if a.status != 500} == {"ratings-v1"}
    assert len(backend.seen) - before == n - len(aborted)  # aborted requests never reached ratings
    others = await bookinfo.calls("ratings", 20)
    assert {a.status for a in others} == {200}


async def test_circuit_breaker_sheds_concurrent_load_fast_and_recovers(bookinfo: Bookinfo) -> None:
    httpbin = await bookinfo.backend("httpbin", "v1")
    await bookinfo.call("httpbin")
    result = await bookinfo.apply("destination-rule-httpbin-circuit-breaker.yaml")
    assert not any(w["path"].endswith("maxRequestsPerConnection") for w in result["warnings"])  # enforced
    httpbin.delay = 0.5
    answers = await bookinfo.calls("httpbin", 6)
    ok = [a for a in answers if a.status == 200]
    shed = [a for a in answers if a.status == 503]
    assert len(ok) == 2  # one on the only connection, one waiting for it
    assert len(shed) == 4
    assert {a.headers.get("x-mesh-overflow") for a in shed} == {"max_pending_requests"}
    assert all(a.elapsed < httpbin.delay for a in shed)  # answered at once, not after queueing
    assert "max_pending_requests" in shed[0].body
    httpbin.delay = 0.0
    after = [await bookinfo.call("httpbin") for _ in range(5)]  # the load is gone: all served again
    assert {(a.status, a.backend) for a in after} == {(200, "httpbin-v1")}
    # maxRequestsPerConnection: 1: each request came on a fresh upstream connection (its own port)
    assert len(set(httpbin.peers[-5:])) == 5
    state = bookinfo.breaker("httpbin")
    assert (state["pending"]["active"], state["pending"]["max"], state["connections"]["max"]) == (0, 1, 1)
    assert state["overflows"]["max_pending_requests"] == 4


async def test_mirror_copies_every_request_to_v2_without_slowing_v1(bookinfo: Bookinfo) -> None:
    primary = await bookinfo.backend("httpbin", "v1")
    shadow = await bookinfo.backend("httpbin", "v2")
    await bookinfo.call("httpbin")
    await bookinfo.apply("httpbin-mirror.yaml")
    primary.seen.clear()
    shadow.seen.clear()
    shadow.delay = 1.0  # a slow mirror must not hold up the primary
    answers = [await bookinfo.call("httpbin", f"/headers/{i}") for i in range(5)]
    assert {(a.status, a.backend) for a in answers} == {(200, "httpbin-v1")}
    assert sum(a.elapsed for a in answers) < shadow.delay  # no answer waited for its copy
    for _ in range(100):
        if len(shadow.seen) == 5:
            break
        await asyncio.sleep(0.05)
    assert sorted(r["path"] for r in shadow.seen) == [f"/headers/{i}" for i in range(5)]
    assert {r["headers"]["host"] for r in shadow.seen} == {"httpbin-shadow"}
    assert {r["headers"]["host"] for r in primary.seen} == {"httpbin"}
