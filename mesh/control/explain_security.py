"""What mesh security would decide for an explained request (pure): the mTLS mode and the authorization
decision at each destination workload, with the policy and rule that decided.

The destination workloads are the endpoints ``explain`` found (registry instances of the routed
service, grouped by namespace and labels, since policies select by labels). The request reaches
them from the source's identity when mTLS is in use: Istio's auto-mTLS sends mTLS unless the
destination's mode is DISABLE, so the source principal is set unless that mode is DISABLE. The
source IP is not known to ``explain``, so ``ipBlocks`` conditions do not match here. The
destination's sidecar enforces the same decisions (``sidecar.security``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mesh.control.instances import Instance, Labels, exclusion_reason
from mesh.control.state import ConfigState
from mesh.control.translate import Catalog, Translation
from mesh.rules.security import AuthorizationPolicySpec, PeerAuthenticationSpec
from mesh.security.authz import (
    NamedPeerAuthentication,
    NamedPolicy,
    RequestAttributes,
    evaluate,
    policies_for_workload,
    resolve_mtls_mode,
)
from mesh.security.identity import SpiffeId

ENFORCED = (
    "computed from the PeerAuthentication and AuthorizationPolicy resources in force, as the destination's "
    "sidecar enforces them (a DENY answers 403 'RBAC: access denied' for HTTP, a reset for TCP)"
)


def security_view(
    state: ConfigState,
    translation: Translation,
    catalog: Catalog,
    clusters: Sequence[str],
    *,
    source: SpiffeId | None,
    method: str,
    path: str,
    host: str,
    headers: Mapping[str, str],
) -> dict[str, Any]:
    """The view for a request routed to ``clusters`` (the explained route's destinations)."""
    policies, peers = _policies(state)
    groups: dict[tuple[str, str, Labels, int], dict[str, Any]] = {}
    for cluster_name in dict.fromkeys(clusters):
        origin = translation.clusters.get(cluster_name)
        if origin is None or origin.kind != "service":
            continue  # an external destination: no mesh workload, no policy applies
        for instance in catalog.get(origin.service, ()):
            if exclusion_reason(instance, origin.namespace, origin.selector, origin.port) is not None:
                continue
            group = (origin.service, instance.namespace, instance.labels, instance.port)
            view = groups.get(group)
            if view is None:
                view = groups[group] = _workload_view(
                    origin.service, instance, policies, peers, source, method, path, host, headers
                )
            view["instances"].append(instance.describe())
    return {
        "enforced": True,
        "note": ENFORCED,
        "source_identity": source.uri if source is not None else None,
        "workloads": list(groups.values()),
    }


def _workload_view(
    service: str,
    instance: Instance,
    policies: Sequence[NamedPolicy],
    peers: Sequence[NamedPeerAuthentication],
    source: SpiffeId | None,
    method: str,
    path: str,
    host: str,
    headers: Mapping[str, str],
) -> dict[str, Any]:
    mtls = resolve_mtls_mode(peers, instance.namespace, instance.labels, instance.port)
    principal = source.principal if source is not None and mtls.mode != "DISABLE" else ""
    attributes = RequestAttributes(
        source_principal=principal,
        destination_port=instance.port,
        method=method,
        path=path,
        host=host,
        headers={k.lower(): v for k, v in headers.items()},
    )
    selected = policies_for_workload(policies, instance.namespace, instance.labels)
    return {
        "service": service,
        "namespace": instance.namespace,
        "labels": dict(instance.labels),
        "port": instance.port,
        "instances": [],
        "mtls": mtls.to_json(),
        "source_principal": principal or None,
        "policies": sorted(policy.id for policy in selected),
        "authorization": evaluate(attributes, selected).to_json(),
    }


def _policies(state: ConfigState) -> tuple[list[NamedPolicy], list[NamedPeerAuthentication]]:
    policies = [
        NamedPolicy(item.key.namespace, item.key.name, item.resource.spec)
        for item in state.listing("AuthorizationPolicy")
        if isinstance(item.resource.spec, AuthorizationPolicySpec)
    ]
    oldest_first = sorted(state.listing("PeerAuthentication"), key=lambda item: (item.created_version, item.key.id))
    peers = [
        NamedPeerAuthentication(item.key.namespace, item.key.name, item.resource.spec)
        for item in oldest_first
        if isinstance(item.resource.spec, PeerAuthenticationSpec)
    ]
    return policies, peers


__all__ = ["ENFORCED", "security_view"]
