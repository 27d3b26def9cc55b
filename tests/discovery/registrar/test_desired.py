"""desired_services: Registrator's port, naming, ID, address, tag, Meta and check rules, without Docker."""

from __future__ import annotations

from dataclasses import replace

from discovery.registrar.config import RegistrarConfig
from discovery.registrar.desired import FAIL_STATIC_TTL, Rules, default_name, desired_services
from discovery.registrar.tags_template import TagsTemplate
from tests.discovery.registrar.samples import CID, RULES, bound, container


def test_one_published_port_is_one_service_named_after_the_image() -> None:
    result = desired_services(container(exposed=["80/tcp"], ports=bound("80/tcp", "32768")), RULES)
    (service,) = result.services
    reg = service.registration
    assert (reg.name, reg.id) == ("nginx", "host1:web-1:80")
    assert (reg.address, reg.port) == ("10.0.0.9", 32768)  # wildcard binding: the host's address
    assert reg.tags == ()
    assert reg.meta["registrar-host"] == "host1"
    assert reg.meta["registrar-container"] == CID
    assert reg.meta["registrar-digest"] == service.digest
    assert reg.checks == ()
    assert service.health is None
    assert not service.heartbeat


def test_a_specific_binding_ip_is_kept_and_ip_flag_overrides_it() -> None:
    c = container(ports=bound("80/tcp", "32768", host_ip="127.0.0.1"))
    assert desired_services(c, RULES).services[0].registration.address == "127.0.0.1"
    forced = replace(RULES, ip="192.0.2.7")
    assert desired_services(c, forced).services[0].registration.address == "192.0.2.7"


def test_unpublished_ports_are_skipped_and_say_why() -> None:
    ports = {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}], "9000/tcp": None}
    result = desired_services(container(exposed=["80/tcp", "9000/tcp"], ports=ports), RULES)
    assert [s.registration.port for s in result.services] == [8080]
    assert result.services[0].registration.name == "nginx"  # one surviving port: no suffix
    assert any("9000/tcp is not published" in why for why in result.skipped)


def test_several_ports_get_suffixes_unless_named_per_port() -> None:
    ports = {**bound("80/tcp", "1080"), **bound("443/tcp", "1443"), **bound("53/udp", "1053")}
    c = container(ports=ports, env=["SERVICE_NAME=shop", "SERVICE_443_NAME=shop-tls"])
    regs = {s.registration.id: s.registration for s in desired_services(c, RULES).services}
    assert regs["host1:web-1:80"].name == "shop-80"
    assert regs["host1:web-1:443"].name == "shop-tls"
    assert regs["host1:web-1:53:udp"].name == "shop-53"
    assert regs["host1:web-1:53:udp"].tags == ("udp",)
    assert [r.port for r in regs.values()] == [1053, 1080, 1443]  # ordered by exposed port


def test_per_port_attributes_win_over_generic_ones_in_any_order() -> None:
    env = ["SERVICE_80_TAGS=specific", "SERVICE_TAGS=generic", "SERVICE_80_REGION=eu", "SERVICE_REGION=us"]
    reg = desired_services(container(ports=bound("80/tcp", "1"), env=env), RULES).services[0].registration
    assert reg.tags == ("specific",)
    assert reg.meta["region"] == "eu"


def test_labels_beat_env_and_are_read_in_sorted_order() -> None:
    c = container(
        ports=bound("80/tcp", "1"),
        env=["SERVICE_NAME=from-env", "SERVICE_OWNER=env"],
        labels={"SERVICE_NAME": "from-label", "other": "x"},
    )
    reg = desired_services(c, RULES).services[0].registration
    assert reg.name == "from-label"
    assert reg.meta["owner"] == "env"
    assert "other" not in reg.meta


def test_tags_escape_commas_and_forced_tags_follow() -> None:
    rules = replace(RULES, tags=TagsTemplate.parse("forced,{{.Config.Hostname}}"))
    c = container(ports=bound("53/udp", "5353"), env=[r"SERVICE_TAGS=a\,b, c ,,a\,b"])
    reg = desired_services(c, rules).services[0].registration
    assert reg.tags == ("a,b", "c", "forced", "abc123", "udp")


def test_service_id_and_meta_come_from_attributes() -> None:
    env = ["SERVICE_ID=custom-id", "SERVICE_REGION=eu", "SERVICE_IGNORE=", "SERVICE_CHECK_TCP=true"]
    reg = desired_services(container(ports=bound("80/tcp", "1"), env=env), RULES).services[0].registration
    assert reg.id == "custom-id"
    assert {k: v for k, v in reg.meta.items() if not k.startswith("registrar-")} == {
        "region": "eu",
        "check_tcp": "true",  # Registrator sends check_* attributes as Meta too
    }
    assert reg.checks[0].check_id == "service:custom-id"


def test_ignore_any_non_empty_value_skips_the_container_or_port() -> None:
    ports = {**bound("80/tcp", "1"), **bound("81/tcp", "2")}
    assert desired_services(container(ports=ports, env=["SERVICE_IGNORE=false"]), RULES).services == ()
    partly = desired_services(container(ports=ports, labels={"SERVICE_81_IGNORE": "1"}), RULES)
    assert [s.registration.id for s in partly.services] == ["host1:web-1:80"]
    assert partly.services[0].registration.name == "nginx-80"  # the group still counts both ports


def test_explicit_needs_a_name() -> None:
    rules = replace(RULES, explicit=True)
    ports = {**bound("80/tcp", "1"), **bound("81/tcp", "2")}
    assert desired_services(container(ports=ports), rules).services == ()
    named = desired_services(container(ports=ports, env=["SERVICE_81_NAME=admin"]), rules)
    assert [s.registration.name for s in named.services] == ["admin"]


def test_default_name_rules() -> None:
    assert default_name(container(image="nginx")) == "nginx"
    assert default_name(container(image="gliderlabs/foobar:1.2")) == "foobar"
    assert default_name(container(image="registry:5000/a/b/api@sha256:" + "f" * 64)) == "api"
    assert default_name(container(image="sha256:" + "a" * 64, name="by-id")) == "by-id"
    assert default_name(container(labels={"com.docker.compose.service": "db"})) == "db"


def test_internal_uses_container_ip_and_exposed_ports_published_or_not() -> None:
    rules = replace(RULES, internal=True, ip="192.0.2.1")
    c = container(
        exposed=["80/tcp", "9000/tcp"], ports={"80/tcp": [{"HostIp": "", "HostPort": "8080"}], "9000/tcp": None}
    )
    regs = [s.registration for s in desired_services(c, rules).services]
    assert [(r.address, r.port) for r in regs] == [("172.17.0.5", 80), ("172.17.0.5", 9000)]


def test_internal_on_a_user_network_uses_that_network_ip() -> None:
    c = container(exposed=["80/tcp"], ip="", network_mode="shop_default", networks={"shop_default": "10.5.0.3"})
    reg = desired_services(c, replace(RULES, internal=True)).services[0].registration
    assert (reg.address, reg.port) == ("10.5.0.3", 80)


def test_user_network_published_port_uses_the_host_binding() -> None:
    # Registrator would pair 10.5.0.3 with host port 32768, which reaches nothing.
    c = container(
        ports=bound("80/tcp", "32768"), ip="", network_mode="shop_default", networks={"shop_default": "10.5.0.3"}
    )
    reg = desired_services(c, RULES).services[0].registration
    assert (reg.address, reg.port) == ("10.0.0.9", 32768)


def test_host_network_exposed_ports_count_as_published_on_the_same_number() -> None:
    c = container(exposed=["8080/tcp", "53/udp"], ports={}, network_mode="host", ip="", networks={"host": ""})
    regs = [s.registration for s in desired_services(c, RULES).services]
    assert [(r.id, r.address, r.port) for r in regs] == [
        ("host1:web-1:53:udp", "10.0.0.9", 53),
        ("host1:web-1:8080", "10.0.0.9", 8080),
    ]


def test_ip_from_label_and_network_container_override_the_address() -> None:
    rules = replace(RULES, use_ip_from_label="ip")
    c = container(ports=bound("80/tcp", "1"), labels={"ip": "198.51.100.4/24"})
    assert desired_services(c, rules).services[0].registration.address == "198.51.100.4"
    pod = replace(container(exposed=["80/tcp"], network_mode="container:abc"), network_container_ip="172.17.0.9")
    reg = desired_services(pod, RULES).services[0].registration
    assert (reg.address, reg.port) == ("172.17.0.9", 80)


def test_stopped_and_paused_containers_want_nothing() -> None:
    for status in ("exited", "paused", "created", "restarting"):
        result = desired_services(container(status=status, ports=bound("80/tcp", "1")), RULES)
        assert result.services == (), status
        assert result.skipped


def test_http_and_tcp_checks_target_the_registered_address() -> None:
    env = ["SERVICE_CHECK_HTTP=/health", "SERVICE_CHECK_TIMEOUT=2s", "SERVICE_CHECK_HTTP_METHOD=HEAD"]
    check = (
        desired_services(container(ports=bound("80/tcp", "4000"), env=env), RULES).services[0].registration.checks[0]
    )
    assert (check.http, check.method, check.interval, check.timeout) == (
        "http://10.0.0.9:4000/health",
        "HEAD",
        10.0,
        2.0,
    )
    assert check.name == "Service 'nginx' check"
    tcp = (
        desired_services(
            container(ports=bound("80/tcp", "4000", "::1"), env=["SERVICE_CHECK_TCP=1", "SERVICE_CHECK_INTERVAL=3s"]),
            RULES,
        )
        .services[0]
        .registration.checks[0]
    )
    assert (tcp.tcp, tcp.interval) == ("[::1]:4000", 3.0)


def test_docker_healthcheck_adds_a_ttl_check_with_the_current_status() -> None:
    for health, status in (("starting", "critical"), ("healthy", "passing"), ("unhealthy", "critical")):
        service = desired_services(container(ports=bound("80/tcp", "1"), health=health), RULES).services[0]
        assert service.health == status
        (check,) = service.registration.checks
        assert (check.check_id, check.ttl) == ("service:host1:web-1:80:docker-health", FAIL_STATIC_TTL)
        assert check.status is None  # the registration's digest does not change with health...
        assert service.body().checks[0].status == status  # ...but what is sent starts at the current status
        assert health in service.health_output


def test_docker_health_changes_do_not_change_the_digest() -> None:
    starting = desired_services(container(ports=bound("80/tcp", "1"), health="starting"), RULES).services[0]
    healthy = desired_services(container(ports=bound("80/tcp", "1"), health="healthy"), RULES).services[0]
    assert starting.digest == healthy.digest


def test_heartbeat_ttl_check_with_ttl_flag() -> None:
    rules = Rules.from_config(RegistrarConfig(ttl=30, ttl_refresh=10), hostname="h", host_ip="10.0.0.1")
    service = desired_services(container(ports=bound("80/tcp", "1"), health="healthy"), rules).services[0]
    ids = {c.check_id: c for c in service.registration.checks}
    assert ids["service:h:web-1:80:registrar-ttl"].ttl == 30
    assert ids["service:h:web-1:80:registrar-ttl"].status == "passing"
    assert ids["service:h:web-1:80:docker-health"].ttl == 30  # with --ttl, health is refreshed too
    assert service.heartbeat


def test_digest_is_stable_and_changes_with_content() -> None:
    c = container(ports=bound("80/tcp", "1"), env=["SERVICE_TAGS=a"])
    assert desired_services(c, RULES).services[0].digest == desired_services(c, RULES).services[0].digest
    moved = container(ports=bound("80/tcp", "2"), env=["SERVICE_TAGS=a"])
    assert desired_services(moved, RULES).services[0].digest != desired_services(c, RULES).services[0].digest


def test_bad_attributes_are_reported_and_skipped_the_rest_registered() -> None:
    env = [
        "SERVICE_80x_NAME=typo",
        "SERVICE_CHECK_HTTP=/ok",
        "SERVICE_CHECK_INTERVAL=often",
        "SERVICE_CHECK_INITIAL_STATUS=green",
        "SERVICE_CHECK_COLOUR=red",
        "SERVICE_99999_NAME=big",
        "SERVICE_80=what",
        "SERVICE_REGION=eu",
    ]
    labels = {
        "SERVICE_bad key": "x",
        "SERVICE_consul-x": "y",
        "SERVICE_registrar-host": "evil",
        "SERVICE_LONG": "v" * 600,
    }
    result = desired_services(container(ports=bound("80/tcp", "1"), env=env, labels=labels), RULES)
    (service,) = result.services
    reg = service.registration
    assert reg.name == "nginx"
    assert reg.meta["region"] == "eu"
    assert reg.meta["registrar-host"] == "host1"
    assert not {"bad key", "consul-x", "long", "80x_name", "80", "check_colour"} & set(reg.meta)
    check = reg.checks[0]
    assert (check.http, check.interval, check.status) == ("http://10.0.0.9:1/ok", 10.0, None)
    reported = {p.attribute for p in result.problems}
    assert reported == {
        "SERVICE_80x_NAME",
        "SERVICE_CHECK_INTERVAL",
        "SERVICE_CHECK_INITIAL_STATUS",
        "SERVICE_CHECK_COLOUR",
        "SERVICE_99999_NAME",
        "SERVICE_80",
        "SERVICE_bad key",
        "SERVICE_consul-x",
        "SERVICE_registrar-host",
        "SERVICE_LONG",
    }


def test_http_checks_are_not_put_on_udp_ports() -> None:
    ports = {**bound("80/tcp", "1"), **bound("53/udp", "2")}
    result = desired_services(container(ports=ports, env=["SERVICE_CHECK_HTTP=/"]), RULES)
    by_port = {s.registration.port: s.registration for s in result.services}
    assert len(by_port[1].checks) == 1
    assert by_port[2].checks == ()
    assert [p.attribute for p in result.problems] == ["SERVICE_CHECK_HTTP"]


def test_too_many_meta_pairs_are_cut_with_a_report() -> None:
    env = [f"SERVICE_K{i:02d}=v" for i in range(70)]
    result = desired_services(container(ports=bound("80/tcp", "1"), env=env), RULES)
    assert len(result.services[0].registration.meta) == 64
    assert len(result.problems) == 70 - 61
