"""The supervisor's merged admin views of ``--workers N`` (pure): /clusters and /metrics."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from sidecar.supervisor import merge_clusters, merge_metrics


def worker_view(active: int, available: bool, requests: int, overflows: dict[str, int]) -> dict[str, Any]:
    resource = {"active": 0, "max": 2}
    return {
        "version": "v1",
        "clusters": [
            {
                "name": "web",
                "circuit_breakers": {
                    "requests": {"active": requests, "max": 2},
                    "pending": dict(resource),
                    "connections": dict(resource),
                    "retries": {"active": 0, "max": 1, "budget": False},
                    "overflows": overflows,
                },
                "endpoints": [
                    {
                        "key": "a",
                        "active_requests": active,
                        "available": available,
                        "pool": {"active": active, "idle": 1},
                    }
                ],
            }
        ],
    }


def test_clusters_sum_counts_and_limits_and_name_workers_that_avoid_an_endpoint() -> None:
    merged = merge_clusters(
        [
            worker_view(1, True, 1, {"max_requests": 2}),
            worker_view(2, False, 2, {"max_requests": 1, "max_pending_requests": 4}),
        ]
    )
    assert merged["workers"] == 2
    (cluster,) = merged["clusters"]
    breakers = cluster["circuit_breakers"]
    assert breakers["requests"] == {"active": 3, "max": 4, "max_per_worker": 2}
    assert breakers["retries"]["max"] == 2
    assert breakers["overflows"] == {"max_requests": 3, "max_pending_requests": 4}
    (endpoint,) = cluster["endpoints"]
    assert endpoint["active_requests"] == 3
    assert endpoint["pool"] == {"active": 3, "idle": 2}
    assert endpoint["available"] is False
    assert endpoint["unavailable_in_workers"] == [1]
    assert merge_clusters([]) == {"version": "", "clusters": []}


def test_merged_metrics_parse_back_with_a_worker_label() -> None:
    text = (
        "# HELP mesh_sidecar_requests_total Requests\n# TYPE mesh_sidecar_requests_total counter\n"
        'mesh_sidecar_requests_total{cluster="web"} 2.0\n'
        "# HELP mesh_sidecar_up Up\n# TYPE mesh_sidecar_up gauge\nmesh_sidecar_up 1.0\n"
    )
    merged = merge_metrics([text, text.replace("2.0", "3.0")]).decode()
    families = {f.name: f for f in text_string_to_metric_families(merged)}
    requests = families["mesh_sidecar_requests"]
    assert requests.type == "counter"
    assert sorted((s.labels["worker"], s.value) for s in requests.samples) == [("0", 2.0), ("1", 3.0)]
    assert len(families["mesh_sidecar_up"].samples) == 2
