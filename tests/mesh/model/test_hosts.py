"""Host normalisation and Host → registry service names."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mesh.model.hosts import (
    ServiceRef,
    endpoint_key,
    normalize_host,
    service_domains,
    service_from_host,
    split_host_port,
)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("Web", ("web", None)),
        ("web:8080", ("web", 8080)),
        ("web.:8080", ("web", 8080)),
        ("web.", ("web", None)),
        ("[::1]:80", ("[::1]", 80)),
        ("[::1]", ("[::1]", None)),
        ("web:0", ("web:0", None)),  # a port out of range stays in the name: matches nothing
        ("web:x", ("web:x", None)),
        ("web:99999", ("web:99999", None)),
        (" web ", ("web", None)),
    ],
)
def test_split_host_port(host: str, expected: tuple[str, int | None]) -> None:
    assert split_host_port(host) == expected


def test_normalize_host() -> None:
    assert normalize_host("Web.Service.Consul.:80") == "web.service.consul:80"
    assert normalize_host("WEB") == "web"


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("web", ServiceRef("web", "short")),
        ("Web:8080", ServiceRef("web", "short", port=8080)),
        ("web.service.consul", ServiceRef("web", "consul")),
        ("web.service.dc2.consul:80", ServiceRef("web", "consul", datacenter="dc2", port=80)),
        ("web.prod.svc.cluster.local", ServiceRef("web", "kubernetes", namespace="prod")),
        ("web.prod.svc.cluster.local.:443", ServiceRef("web", "kubernetes", namespace="prod", port=443)),
        ("web.prod.svc", ServiceRef("web", "kubernetes", namespace="prod")),
        ("web.prod", ServiceRef("web", "kubernetes", namespace="prod")),
        ("my_svc", ServiceRef("my_svc", "short")),
        ("10.0.0.1", None),
        ("10.0.0.1:80", None),
        ("[::1]:80", None),
        ("", None),
        ("web.node.consul", None),
        ("a.b.web.service.consul", None),
        ("web.prod.pod.cluster.local", None),
        ("x.web.prod.svc.cluster.local", None),
        ("www.example.com", None),
        ("-web", None),
        ("we b", None),
        ("web/../x", None),
        ("a" * 64, None),
    ],
)
def test_service_from_host(host: str, expected: ServiceRef | None) -> None:
    assert service_from_host(host) == expected


def test_custom_domains() -> None:
    assert service_from_host("web.service.example", consul_domain="example") == ServiceRef("web", "consul")
    assert service_from_host("web.ns.svc.k8s.internal", cluster_domain="k8s.internal.") == ServiceRef(
        "web", "kubernetes", namespace="ns"
    )
    assert service_from_host("web.service.consul", consul_domain="example") is None


@settings(deadline=None)
@given(
    service=st.from_regex(r"[a-z][a-z0-9-]{0,20}[a-z0-9]", fullmatch=True),
    namespace=st.from_regex(r"[a-z](?:[a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True),
    port=st.one_of(st.none(), st.integers(1, 65535)),
)
def test_every_service_domain_names_the_service(service: str, namespace: str, port: int | None) -> None:
    for domain in service_domains(service, namespace, datacenter="dc1"):
        host = domain if port is None else f"{domain}:{port}"
        ref = service_from_host(host)
        assert ref is not None, host
        assert ref.service == service
        assert ref.port == port
        if ref.namespace is not None:
            assert ref.namespace == namespace


def test_endpoint_key() -> None:
    assert endpoint_key("10.0.0.1", 80) == "10.0.0.1:80"
    assert endpoint_key("::1", 80) == "[::1]:80"
