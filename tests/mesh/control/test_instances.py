"""Instance labels (Meta, key|value and key=value tags) and why an instance is not an endpoint."""

from __future__ import annotations

from discovery.client_models import AgentService, CatalogNode, HealthCheck, HealthServiceEntry
from mesh.control.instances import exclusion_reason, instance_labels, instances_from_entries
from tests.mesh.control.helpers import instance


def test_labels_come_from_meta_and_tags_with_meta_winning() -> None:
    labels = dict(
        instance_labels(["version|v1", "track=canary", "plain", "version=v9"], {"zone": "a", "track": "stable"}.items())
    )
    assert labels == {"version": "v1", "track": "stable", "zone": "a"}


def test_instances_from_health_entries() -> None:
    entry = HealthServiceEntry(
        CatalogNode("node1", "10.0.0.9"),
        AgentService("web-1", "web", tags=("version|v2",), meta={"k8s-namespace": "prod"}, port=8080),
        (HealthCheck("node1", "service:web-1", "ttl", "critical", output="expired"),),
    )
    (parsed,) = instances_from_entries([entry])
    assert parsed.address == "10.0.0.9"
    assert parsed.namespace == "prod"
    assert parsed.status == "critical"
    assert parsed.failing[0].output == "expired"
    assert dict(parsed.labels)["version"] == "v2"


def test_exclusion_reasons() -> None:
    v1 = instance("r-v1", meta={"version": "v1"})
    assert exclusion_reason(v1, "default", (("version", "v1"),), None) is None
    assert "lacks version=v2" in (exclusion_reason(v1, "default", (("version", "v2"),), None) or "")
    assert "namespace 'default'" in (exclusion_reason(v1, "prod", (), None) or "")
    assert "port 9080" in (exclusion_reason(v1, "default", (), 8080) or "")
    sick = instance("r-sick", status="critical")
    reason = exclusion_reason(sick, "default", (), None) or ""
    assert reason.startswith("unhealthy (critical")
    assert "connection refused" in reason
