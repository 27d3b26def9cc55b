"""Reading our own services back from an agent listing."""

from __future__ import annotations

from discovery.client_models import AgentService, HealthCheck
from discovery.registrar.ownership import digest, health_check_id, heartbeat_check_id, owned_services


def test_owned_services_are_grouped_by_container_with_their_health() -> None:
    services = {
        "h:a:80": AgentService(
            "h:a:80", "a", meta={"registrar-host": "h", "registrar-container": "c1", "registrar-digest": "d1"}
        ),
        "h:a:81": AgentService(
            "h:a:81", "a", meta={"registrar-host": "h", "registrar-container": "c1", "registrar-digest": "d2"}
        ),
        "h:b:80": AgentService("h:b:80", "b", meta={"registrar-host": "h", "registrar-container": "c2"}),
        "x:c:80": AgentService("x:c:80", "c", meta={"registrar-host": "x", "registrar-container": "c3"}),
        "manual": AgentService("manual", "m"),
    }
    checks = {
        health_check_id("h:a:80"): HealthCheck(
            "n", health_check_id("h:a:80"), "Docker health", "passing", service_id="h:a:80"
        ),
    }
    owned = owned_services(services, checks, "h")
    assert set(owned) == {"c1", "c2"}
    assert owned["c1"]["h:a:80"].health == "passing"
    assert owned["c1"]["h:a:81"].health is None
    assert owned["c1"]["h:a:81"].digest == "d2"
    assert owned["c2"]["h:b:80"].digest == ""  # no digest: it will be rewritten


def test_check_ids_and_digest() -> None:
    assert health_check_id("h:a:80") == "service:h:a:80:docker-health"
    assert heartbeat_check_id("h:a:80") == "service:h:a:80:registrar-ttl"
    assert digest({"a": 1, "b": [1, 2]}) == digest({"b": [1, 2], "a": 1})
    assert digest({"a": 1}) != digest({"a": 2})
