"""CONSUL_* environment and address parsing for the registry client."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from discovery.client import RegistryClient
from discovery.client_config import ClientConfig, ClientConfigError, parse_bool


def test_defaults_match_consul() -> None:
    config = ClientConfig.from_env({})

    assert config == ClientConfig(scheme="http", host="127.0.0.1", port=8500, token=None, verify=True)
    assert config.base_url == "http://127.0.0.1:8500"


@pytest.mark.parametrize(
    ("address", "scheme", "host", "port"),
    [
        ("127.0.0.1:8500", "http", "127.0.0.1", 8500),
        ("consul.internal", "http", "consul.internal", 8500),
        ("http://registry:18500", "http", "registry", 18500),
        ("https://registry:8501", "https", "registry", 8501),
        ("https://registry:8501/", "https", "registry", 8501),
        ("[::1]:8500", "http", "::1", 8500),
        ("http://[fe80::1]", "http", "fe80::1", 8500),
    ],
)
def test_tcp_address_forms(address: str, scheme: str, host: str, port: int) -> None:
    config = ClientConfig.from_address(address)

    assert (config.scheme, config.host, config.port, config.unix_socket) == (scheme, host, port, None)


def test_ipv6_base_url_is_bracketed() -> None:
    assert ClientConfig.from_address("[::1]:8500").base_url == "http://[::1]:8500"


def test_unix_socket_address() -> None:
    config = ClientConfig.from_address("unix:///var/run/consul/http.sock")

    assert config.unix_socket == "/var/run/consul/http.sock"
    assert config.base_url == "http://localhost"


@pytest.mark.parametrize(
    "address",
    [
        "",
        "ftp://registry:21",
        "unix://",
        "registry:",
        "registry:0",
        "registry:65536",
        "registry:http",
        ":8500",
        "::1:8500",
        "[::1",
        "[::1]8500",
        "http://registry:8500/v1",
    ],
)
def test_bad_addresses_are_rejected(address: str) -> None:
    with pytest.raises(ClientConfigError):
        ClientConfig.from_address(address)


def test_address_and_token_from_env() -> None:
    config = ClientConfig.from_env({"CONSUL_HTTP_ADDR": "https://10.0.0.5:8501", "CONSUL_HTTP_TOKEN": "s3cr3t"})

    assert config.base_url == "https://10.0.0.5:8501"
    assert config.token == "s3cr3t"


def test_empty_variables_count_as_unset() -> None:
    config = ClientConfig.from_env({"CONSUL_HTTP_ADDR": "", "CONSUL_HTTP_TOKEN": "", "CONSUL_HTTP_SSL": ""})

    assert config == ClientConfig()


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSUL_HTTP_ADDR", "registry:9500")
    monkeypatch.delenv("CONSUL_HTTP_SSL", raising=False)

    assert ClientConfig.from_env().base_url == "http://registry:9500"


@pytest.mark.parametrize("address", ["127.0.0.1:8501", "http://127.0.0.1:8501"])
def test_ssl_flag_upgrades_and_explicit_http_never_downgrades(address: str) -> None:
    config = ClientConfig.from_env({"CONSUL_HTTP_ADDR": address, "CONSUL_HTTP_SSL": "true"})

    assert config.base_url == "https://127.0.0.1:8501"


def test_ssl_flag_false_keeps_an_https_address() -> None:
    config = ClientConfig.from_env({"CONSUL_HTTP_ADDR": "https://h:8501", "CONSUL_HTTP_SSL": "false"})

    assert config.scheme == "https"


def test_ssl_verify_flag() -> None:
    assert ClientConfig.from_env({"CONSUL_HTTP_SSL_VERIFY": "0"}).verify is False
    assert ClientConfig.from_env({"CONSUL_HTTP_SSL_VERIFY": "T"}).verify is True


@pytest.mark.parametrize("text", ["1", "t", "T", "TRUE", "true", "True"])
def test_parse_bool_true_spellings(text: str) -> None:
    assert parse_bool(text, "X") is True


@pytest.mark.parametrize("text", ["0", "f", "F", "FALSE", "false", "False"])
def test_parse_bool_false_spellings(text: str) -> None:
    assert parse_bool(text, "X") is False


@pytest.mark.parametrize("text", ["yes", "on", "tRuE", " true"])
def test_invalid_booleans_fail_loudly(text: str) -> None:
    with pytest.raises(ClientConfigError, match="CONSUL_HTTP_SSL"):
        ClientConfig.from_env({"CONSUL_HTTP_SSL": text})


def test_tls_file_variables() -> None:
    config = ClientConfig.from_env(
        {"CONSUL_CACERT": "/etc/ca.pem", "CONSUL_CLIENT_CERT": "/etc/c.pem", "CONSUL_CLIENT_KEY": "/etc/k.pem"}
    )

    assert (config.ca_file, config.cert_file, config.key_file) == ("/etc/ca.pem", "/etc/c.pem", "/etc/k.pem")


def test_client_key_without_certificate_is_rejected() -> None:
    with pytest.raises(ClientConfigError, match="CONSUL_CLIENT_CERT"):
        ClientConfig.from_env({"CONSUL_CLIENT_KEY": "/etc/k.pem"})


def test_ssl_context_verifies_by_default() -> None:
    context = ClientConfig(scheme="https").ssl_context()

    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True


def test_ssl_context_without_verification() -> None:
    context = ClientConfig(scheme="https", verify=False).ssl_context()

    assert context.verify_mode == ssl.CERT_NONE
    assert context.check_hostname is False


def test_unreadable_tls_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ClientConfigError, match="TLS"):
        ClientConfig(scheme="https", ca_file=str(tmp_path / "missing.pem")).ssl_context()
    not_a_cert = tmp_path / "junk.pem"
    not_a_cert.write_text("junk")
    with pytest.raises(ClientConfigError, match="TLS"):
        ClientConfig(scheme="https", cert_file=str(not_a_cert)).ssl_context()


def test_client_takes_config_address_or_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSUL_HTTP_ADDR", "envhost:9000")
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", "env-token")

    assert RegistryClient().config.base_url == "http://envhost:9000"
    assert RegistryClient().config.token == "env-token"
    explicit = RegistryClient("https://h:8501", token="arg-token")
    assert (explicit.config.base_url, explicit.config.token) == ("https://h:8501", "arg-token")


def test_client_fails_early_on_bad_tls_files(tmp_path: Path) -> None:
    with pytest.raises(ClientConfigError):
        RegistryClient(ClientConfig(scheme="https", ca_file=str(tmp_path / "missing.pem")))
