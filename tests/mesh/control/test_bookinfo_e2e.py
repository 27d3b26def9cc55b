"""Bookinfo routing tasks end to end with the rule files of ``examples/bookinfo/``: registry →
control plane → a real productpage sidecar → real reviews backends (``tests.mesh.control.bookinfo``).

Covered here: routing on first call, routing by header, weighted shift, request timeout; fault
injection, circuit breaking and mirroring are in ``test_bookinfo_resilience_e2e``.
"""

from __future__ import annotations

from collections import Counter

from tests.mesh.control.bookinfo import Bookinfo, bookinfo

__all__ = ["bookinfo"]


async def reviews(mesh: Bookinfo) -> None:
    for version in ("v1", "v2", "v3"):
        await mesh.backend("reviews", version)
    await mesh.call("reviews")  # the app's first call makes the sidecar ask for reviews
    await mesh.apply("destination-rule-all.yaml")


async def shares(mesh: Bookinfo, count: int = 200) -> Counter[str]:
    return Counter([(await mesh.call("reviews")).backend for _ in range(count)])


async def test_first_call_is_routed_on_demand_to_every_version(bookinfo: Bookinfo) -> None:
    for version in ("v1", "v2", "v3"):
        await bookinfo.backend("reviews", version)
    seen = Counter([(await bookinfo.call("reviews")).backend for _ in range(30)])
    assert set(seen) == {"reviews-v1", "reviews-v2", "reviews-v3"}


async def test_all_v1_then_routing_by_header(bookinfo: Bookinfo) -> None:
    await reviews(bookinfo)
    await bookinfo.apply("virtual-service-all-v1.yaml")
    assert set((await shares(bookinfo, 10)).elements()) == {"reviews-v1"}
    await bookinfo.apply("virtual-service-reviews-test-v2.yaml")
    jason = {(await bookinfo.call("reviews", headers={"end-user": "jason"})).backend for _ in range(10)}
    kim = {(await bookinfo.call("reviews", headers={"end-user": "kim"})).backend for _ in range(10)}
    assert (jason, kim) == ({"reviews-v2"}, {"reviews-v1"})
    assert set((await shares(bookinfo, 10)).elements()) == {"reviews-v1"}


def within_binomial(hits: int, n: int, percent: float) -> bool:
    """``hits`` of ``n`` is within 4 standard deviations of ``percent`` % (a false failure ~1 in 15,000)."""
    p = percent / 100
    return bool(abs(hits - n * p) <= 4 * (n * p * (1 - p)) ** 0.5)


async def test_weighted_shift_90_10_then_50_50_then_0_100(bookinfo: Bookinfo) -> None:
    await reviews(bookinfo)
    await bookinfo.apply("virtual-service-reviews-90-10.yaml")
    seen = await shares(bookinfo)
    assert set(seen) <= {"reviews-v1", "reviews-v3"}
    assert within_binomial(seen["reviews-v3"], 200, 10), seen
    await bookinfo.apply("virtual-service-reviews-50-50.yaml")
    seen = await shares(bookinfo)
    assert set(seen) == {"reviews-v1", "reviews-v3"}
    assert within_binomial(seen["reviews-v3"], 200, 50), seen
    await bookinfo.apply("virtual-service-reviews-0-100.yaml")
    assert set(await shares(bookinfo, 20)) == {"reviews-v3"}


async def test_request_timeout(bookinfo: Bookinfo) -> None:
    await reviews(bookinfo)
    await bookinfo.apply("virtual-service-reviews-timeout.yaml")  # reviews v2, 0.5 s
    cut = await bookinfo.call("reviews", "/slow?delay=1.5")
    assert cut.status == 504
    assert cut.elapsed < 1.5  # answered by the route timeout, not after the backend's 1.5 s
    fast = await bookinfo.call("reviews", "/slow?delay=0.01")
    assert (fast.status, fast.body) == (200, "slow reviews-v2")
