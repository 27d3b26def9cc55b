"""The rate limits of a sidecar's snapshot: the ``RateLimitPolicy`` resources selecting its workload (pure).

Selection is ``AuthorizationPolicy``'s (``mesh.security.authz.selects``): a policy in the
workload's namespace or in the root namespace, narrowed by its ``selector``; sorted by
``namespace/name`` so equal rules give equal snapshots.
"""

from __future__ import annotations

from collections.abc import Iterable

from mesh.model.ratelimit import RateLimitEntry
from mesh.rules.ratelimit import RateLimitPolicySpec
from mesh.rules.resource import Resource
from mesh.security.authz import ROOT_NAMESPACE, selects


def rate_limits_for(
    namespace: str, labels: tuple[tuple[str, str], ...], resources: Iterable[Resource]
) -> tuple[RateLimitEntry, ...]:
    return tuple(
        RateLimitEntry(resource.key.namespace, resource.key.name, spec, resource.document().get("spec") or {})
        for resource in sorted(resources, key=lambda r: r.key.id)
        if isinstance(spec := resource.spec, RateLimitPolicySpec)
        and resource.key.namespace in (namespace, ROOT_NAMESPACE)
        and selects(spec.selector, labels)
    )


__all__ = ["rate_limits_for"]
