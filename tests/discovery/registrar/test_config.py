"""Flag validation names the flag; MESH_* variables read like mesh registrar's flags."""

from __future__ import annotations

import pytest

from discovery.registrar.config import ConfigError, RegistrarConfig, config_from_env


@pytest.mark.parametrize(
    ("config", "flag"),
    [
        (RegistrarConfig(deregister="sometimes"), "--deregister"),  # type: ignore[arg-type]
        (RegistrarConfig(ttl=30), "--ttl"),
        (RegistrarConfig(ttl_refresh=10), "--ttl"),
        (RegistrarConfig(ttl=10, ttl_refresh=10), "--ttl"),
        (RegistrarConfig(resync=-1), "--resync"),
        (RegistrarConfig(retry_attempts=-2), "--retry-attempts"),
        (RegistrarConfig(retry_interval=0), "--retry-interval"),
        (RegistrarConfig(ip="my-host"), "--ip"),
        (RegistrarConfig(tags="{{printf .X}}"), "--tags"),
    ],
)
def test_bad_flags_are_named(config: RegistrarConfig, flag: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config.validate()
    assert caught.value.flag == flag
    assert str(caught.value).startswith(flag)


def test_good_config_validates() -> None:
    config = RegistrarConfig(ttl=30, ttl_refresh=10, ip="10.0.0.1", tags="a,{{.Name}}", retry_attempts=-1)
    assert config.validate() is config


def test_docker_url_prefers_the_flag_then_docker_host() -> None:
    assert RegistrarConfig().docker_url({}) == "unix:///var/run/docker.sock"
    assert RegistrarConfig().docker_url({"DOCKER_HOST": "tcp://127.0.0.1:2375"}) == "tcp://127.0.0.1:2375"
    assert RegistrarConfig(docker_host="unix:///x.sock").docker_url({"DOCKER_HOST": "tcp://h:1"}) == "unix:///x.sock"


def test_config_from_env() -> None:
    env = {
        "MESH_INTERNAL": "true",
        "MESH_IP": "10.1.2.3",
        "MESH_RESYNC": "30",
        "MESH_DEREGISTER": "on-success",
        "MESH_TTL": "30",
        "MESH_TTL_REFRESH": "10",
        "MESH_RETRY_INTERVAL": "500",
        "MESH_CLEANUP": "0",
    }
    config = config_from_env(env, metrics_addr=None)
    assert config.internal
    assert not config.cleanup
    assert (config.ip, config.resync, config.deregister) == ("10.1.2.3", 30.0, "on-success")
    assert (config.ttl, config.ttl_refresh, config.retry_interval) == (30.0, 10.0, 0.5)
    assert config.metrics_addr is None


def test_config_from_env_names_the_bad_variable() -> None:
    with pytest.raises(ConfigError, match="MESH_CLEANUP"):
        config_from_env({"MESH_CLEANUP": "maybe"})
    with pytest.raises(ConfigError, match="--ttl"):
        config_from_env({"MESH_TTL": "30"})
