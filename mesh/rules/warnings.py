"""What an accepted resource asks for that the sidecar does not enforce (pure).

An apply answers with these as ``warnings`` (like ``kubectl``'s), and ``mesh explain`` repeats
the ones on the route it explains, so nobody believes a setting is active when it is not.
Retries, faults, mirrors, redirects, authority rewrites, circuit-breaker limits and outlier
detection are carried in the snapshot (``mesh.model.policies``) and enforced by the sidecar's
resilience layer (issue #7), so they are not listed. This module is the one list to shorten as
the data plane grows (a later issue brings security).
"""

from __future__ import annotations

from dataclasses import dataclass

from mesh.rules.destination_rule import DestinationRuleSpec, TrafficPolicy
from mesh.rules.resource import Resource
from mesh.rules.service_entry import ServiceEntrySpec
from mesh.rules.virtual_service import HttpRoute, VirtualServiceSpec

NOT_YET = "accepted and stored, but not enforced yet: the sidecar has no {what}"


@dataclass(frozen=True, slots=True)
class Warning:
    path: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message}


def warnings_for(resource: Resource) -> list[Warning]:
    spec = resource.spec
    if isinstance(spec, VirtualServiceSpec):
        return _virtual_service(spec)
    if isinstance(spec, DestinationRuleSpec):
        return _destination_rule(spec)
    if isinstance(spec, ServiceEntrySpec):
        return _service_entry(spec)
    return []  # the security kinds are enforced by the sidecars (docs/security.md)


def route_warnings(route: HttpRoute, path: str) -> list[Warning]:
    """The unenforced parts of one HTTP route (``path`` is ``spec.http[i]``)."""
    out: list[Warning] = []
    if route.retries is not None and route.retries.retry_remote_localities is not None:
        out.append(Warning(f"{path}.retries.retryRemoteLocalities", NOT_YET.format(what="localities")))
    if route.cors:
        out.append(Warning(f"{path}.corsPolicy", NOT_YET.format(what="CORS filter")))
    return out


def _virtual_service(spec: VirtualServiceSpec) -> list[Warning]:
    out: list[Warning] = []
    if not spec.applies_to_sidecars:
        out.append(
            Warning(
                "spec.gateways",
                f"bound only to gateways {', '.join(spec.gateways)}: no sidecar uses it (add 'mesh' to apply it to "
                "sidecars too)",
            )
        )
    for i, route in enumerate(spec.http):
        out.extend(route_warnings(route, f"spec.http[{i}]"))
        for j, match in enumerate(route.match):
            if match.gateways and "mesh" not in match.gateways:
                out.append(Warning(f"spec.http[{i}].match[{j}].gateways", "names only gateways: no sidecar matches it"))
    return out


def _destination_rule(spec: DestinationRuleSpec) -> list[Warning]:
    out: list[Warning] = []
    if spec.traffic_policy is not None:
        out.extend(_traffic_policy(spec.traffic_policy, "spec.trafficPolicy"))
    for i, subset in enumerate(spec.subsets):
        if subset.traffic_policy is not None:
            out.extend(_traffic_policy(subset.traffic_policy, f"spec.subsets[{i}].trafficPolicy"))
    return out


def _traffic_policy(policy: TrafficPolicy, path: str) -> list[Warning]:
    out: list[Warning] = []
    parts = [(path, policy.load_balancer, policy.connection_pool, policy.outlier_detection, policy.tls)]
    parts += [
        (f"{path}.portLevelSettings[{i}]", p.load_balancer, p.connection_pool, p.outlier_detection, p.tls)
        for i, p in enumerate(policy.port_level)
    ]
    for where, lb, pool, outlier, tls in parts:
        if lb is not None:
            if lb.simple == "PASSTHROUGH":
                out.append(
                    Warning(
                        f"{where}.loadBalancer.simple",
                        "PASSTHROUGH has no original destination address in a Host-routed sidecar: round robin is used",
                    )
                )
            if lb.locality_settings:
                out.append(
                    Warning(f"{where}.loadBalancer.localityLbSetting", NOT_YET.format(what="locality awareness"))
                )
            if lb.warmup_s is not None:
                out.append(Warning(f"{where}.loadBalancer.warmupDurationSecs", NOT_YET.format(what="slow start")))
        if pool is not None:
            for name in pool.unenforced_given():
                out.append(Warning(f"{where}.connectionPool.{name}", NOT_YET.format(what=f"setting for {name}")))
        if outlier is not None:
            for name in outlier.unenforced_given():
                out.append(Warning(f"{where}.outlierDetection.{name}", NOT_YET.format(what=f"setting for {name}")))
        if tls is not None and tls.mode in ("SIMPLE", "MUTUAL"):  # DISABLE and ISTIO_MUTUAL are enforced
            what = f"TLS origination with your own certificates ({tls.mode})"
            out.append(Warning(f"{where}.tls", NOT_YET.format(what=what)))
    return out


def _service_entry(spec: ServiceEntrySpec) -> list[Warning]:
    out: list[Warning] = []
    if spec.addresses:
        out.append(
            Warning("spec.addresses", "the sidecar routes by Host (HTTP) or by --upstream port (TCP), not by IP")
        )
    tcp_ports = [p for p in spec.ports if not p.is_http]
    if tcp_ports:
        names = ", ".join(f"{p.name} ({p.protocol})" for p in tcp_ports)
        out.append(Warning("spec.ports", f"TCP ports {names} are reached through --upstream NAME=PORT listeners only"))
    return out


__all__ = ["NOT_YET", "Warning", "route_warnings", "warnings_for"]
