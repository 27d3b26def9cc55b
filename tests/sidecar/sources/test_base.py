"""Offering snapshots: ACK/NACK counting, and an apply that raises counts as a NACK."""

from __future__ import annotations

import logging

import pytest

from mesh.model.snapshot import Snapshot
from sidecar.sources.base import APPLIED, ApplyResult, SourceStats, offer

log = logging.getLogger("tests.sources")


def test_ack_and_nack_are_counted() -> None:
    stats = SourceStats()
    assert offer(lambda s: APPLIED, Snapshot("v1"), stats, log)
    assert not offer(lambda s: ApplyResult.rejected("port in use"), Snapshot("v2"), stats, log)
    assert (stats.attempts, stats.accepted, stats.rejected) == (2, 1, 1)
    assert (stats.version, stats.rejected_version, stats.last_error) == ("v1", "v2", "port in use")


def test_an_apply_that_raises_is_a_nack(caplog: pytest.LogCaptureFixture) -> None:
    def broken(snapshot: Snapshot) -> ApplyResult:
        raise ValueError("ring too large")

    stats = SourceStats()
    with caplog.at_level(logging.ERROR):
        assert not offer(broken, Snapshot("v3"), stats, log)
    assert stats.last_error == "ValueError: ring too large"
    assert any("v3 rejected" in record.getMessage() for record in caplog.records)


def test_apply_result() -> None:
    assert APPLIED.ok
    assert not ApplyResult.rejected("x").ok
    assert ApplyResult.rejected("").error == "rejected"
