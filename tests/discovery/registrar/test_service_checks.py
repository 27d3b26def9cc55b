"""SERVICE_CHECK_* into one check, Registrator's precedence, bad values skipped."""

from __future__ import annotations

import pytest

from discovery.registrar.attributes import attributes_for_port, read_attributes
from discovery.registrar.service_checks import Target, build_check

TARGET = Target("10.0.0.5", 31000, "h:web:80", "web")


def check_for(*env: str, target: Target = TARGET):  # type: ignore[no-untyped-def]
    attrs, _ = read_attributes(list(env), {})
    return build_check(attributes_for_port(attrs, 80), target)


def test_no_check_attributes_no_check() -> None:
    assert check_for("SERVICE_NAME=x") == (None, [])


def test_http_first_wins_over_later_kinds() -> None:
    check, problems = check_for("SERVICE_CHECK_TCP=true", "SERVICE_CHECK_HTTP=/h", "SERVICE_CHECK_TTL=10s")
    assert check is not None
    assert problems == []
    assert (check.http, check.tcp, check.ttl) == ("http://10.0.0.5:31000/h", None, None)
    assert (check.check_id, check.interval) == ("service:h:web:80", 10.0)


def test_https_ttl_tcp_and_options() -> None:
    https, _ = check_for("SERVICE_CHECK_HTTPS=/s", "SERVICE_CHECK_HTTPS_METHOD=POST", "SERVICE_CHECK_INTERVAL=5s")
    assert https is not None
    assert (https.http, https.method, https.interval) == ("https://10.0.0.5:31000/s", "POST", 5.0)
    ttl, _ = check_for(
        "SERVICE_CHECK_TTL=30s", "SERVICE_CHECK_INITIAL_STATUS=passing", "SERVICE_CHECK_DEREGISTER_AFTER=90s"
    )
    assert ttl is not None
    assert (ttl.ttl, ttl.interval, ttl.status, ttl.deregister_critical_service_after) == (30.0, None, "passing", 90.0)
    tcp, _ = check_for("SERVICE_80_CHECK_TCP=true", "SERVICE_CHECK_TIMEOUT=3s")
    assert tcp is not None
    assert (tcp.tcp, tcp.timeout) == ("10.0.0.5:31000", 3.0)


@pytest.mark.parametrize(
    "kind", ["SERVICE_CHECK_CMD=/bin/check", "SERVICE_CHECK_SCRIPT=nc -z $SERVICE_IP", "SERVICE_CHECK_GRPC=true"]
)
def test_script_and_grpc_checks_are_skipped_with_a_reason(kind: str) -> None:
    check, problems = check_for(kind)
    assert check is None
    assert [p.attribute for p in problems] == [kind.split("=")[0]]
    assert "skipped" in problems[0].message


@pytest.mark.parametrize(
    ("env", "attribute"),
    [
        (("SERVICE_CHECK_HTTP=/h", "SERVICE_CHECK_INTERVAL=abc"), "SERVICE_CHECK_INTERVAL"),
        (("SERVICE_CHECK_HTTP=/h", "SERVICE_CHECK_INTERVAL=0s"), "SERVICE_CHECK_INTERVAL"),
        (("SERVICE_CHECK_HTTP=/h", "SERVICE_CHECK_TIMEOUT=-1s"), "SERVICE_CHECK_TIMEOUT"),
        (("SERVICE_CHECK_HTTP=/h", "SERVICE_CHECK_HTTP_METHOD=G E T"), "SERVICE_CHECK_HTTP_METHOD"),
        (("SERVICE_CHECK_HTTP=/h", "SERVICE_CHECK_INITIAL_STATUS=ok"), "SERVICE_CHECK_INITIAL_STATUS"),
        (("SERVICE_CHECK_HTTP=/h", "SERVICE_CHECK_DEREGISTER_AFTER=later"), "SERVICE_CHECK_DEREGISTER_AFTER"),
        (("SERVICE_CHECK_HTTP=/h", "SERVICE_CHECK_TIMEOT=1s"), "SERVICE_CHECK_TIMEOT"),
    ],
)
def test_bad_options_are_skipped_and_the_check_kept(env: tuple[str, ...], attribute: str) -> None:
    check, problems = check_for(*env)
    assert check is not None
    assert check.http == "http://10.0.0.5:31000/h"
    assert check.interval == 10.0
    assert [p.attribute for p in problems] == [attribute]


def test_checks_that_cannot_be_built_are_skipped() -> None:
    check, problems = check_for("SERVICE_CHECK_TTL=forever")
    assert check is None
    assert problems[0].attribute == "SERVICE_CHECK_TTL"
    check, problems = check_for("SERVICE_CHECK_HTTP=health")
    assert check is None
    assert "starting with '/'" in problems[0].message


def test_ipv6_addresses_are_bracketed() -> None:
    check, _ = check_for("SERVICE_CHECK_HTTP=/", target=Target("fd00::5", 80, "id", "web"))
    assert check is not None
    assert check.http == "http://[fd00::5]:80/"
