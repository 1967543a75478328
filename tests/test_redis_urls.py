"""Redis URLs: TLS parameters read once and given to every client alike, and a
password that no message, setting shown or repr ever quotes."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from celery.app.utils import filter_hidden_settings
from kombu import Connection

from spiral_tasks.config import Settings
from spiral_tasks.config.environment import Environment
from spiral_tasks.config.redis_urls import (
    RedisAddress,
    RedisTls,
    parse_redis_url,
    redis_url_problem,
    shown_url,
)
from spiral_tasks.errors import ConfigError
from spiral_tasks.tasks.config import celery_config

PASSWORD = "Pa55-w0rd-e1c4"


@pytest.fixture
def pem(tmp_path: Path) -> Path:
    """A file where a PEM file is expected (its contents are the server's business)."""
    path = tmp_path / "ca.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\n")
    return path


@pytest.mark.parametrize(("url", "shown"), [
    (f"redis://spiral:{PASSWORD}@host:6379/0", "redis://spiral:***@host:6379/0"),
    (f"rediss://:{PASSWORD}@host/0?ssl_cert_reqs=required",
     "rediss://:***@host/0?ssl_cert_reqs=required"),
    # Reserved characters, unescaped: urllib would split the password in odd places.
    ("redis://spiral:pa/ss@host/0", "redis://spiral:***@host/0"),
    ("redis://spiral:pa#ss@host/0", "redis://spiral:***@host/0"),
    ("redis://spiral:pa@ss@host/0", "redis://spiral:***@host/0"),
    ("redis://spiral:pa?ss@host/0", "redis://spiral:***@host/0"),
    # A lone word before @ is a password to some clients.
    (f"redis://{PASSWORD}@host/0", "redis://***@host/0"),
    (f"redis://host/0?password={PASSWORD}&db=1", "redis://host/0?password=***&db=1"),
    ("redis://host:6379/0", "redis://host:6379/0"),
    ("spiral-sqlite:///var/lib/broker.sqlite3", "spiral-sqlite:///var/lib/broker.sqlite3"),
])
def test_a_shown_url_hides_its_password(url: str, shown: str) -> None:
    assert shown_url(url) == shown


def test_a_rediss_url_verifies_the_server_unless_it_says_otherwise(pem: Path) -> None:
    assert parse_redis_url("rediss://h:6380/0") == RedisAddress("rediss://h:6380/0",
                                                                 RedisTls())
    assert RedisTls().options() == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    address = parse_redis_url(f"rediss://u:p@h:6380/0?socket_timeout=5&ssl_ca_certs={pem}"
                              f"&ssl_certfile={pem}&ssl_keyfile={pem}&ssl_cert_reqs=none")
    # The TLS parameters leave the URL (every client gets them as options); others stay.
    assert address.url == "rediss://u:p@h:6380/0?socket_timeout=5"
    assert address.client_options() == {"ssl_cert_reqs": ssl.CERT_NONE,
                                        "ssl_ca_certs": str(pem), "ssl_certfile": str(pem),
                                        "ssl_keyfile": str(pem)}
    assert parse_redis_url("redis://h/0").client_options() == {}
    # Written out in full for kombu, which would not check a bare rediss:// URL.
    assert address.url_with_tls() == (f"rediss://u:p@h:6380/0?socket_timeout=5"
                                      f"&ssl_cert_reqs=none&ssl_ca_certs={pem}"
                                      f"&ssl_certfile={pem}&ssl_keyfile={pem}")
    bare = parse_redis_url("rediss://h:6380/0").url_with_tls()
    assert Connection(bare).ssl == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    assert parse_redis_url("redis://h/0").url_with_tls() == "redis://h/0"


def test_credentials_can_leave_the_url(pem: Path) -> None:
    address = parse_redis_url(f"rediss://spi%40ral:p%2Fw@h:6380/0?ssl_ca_certs={pem}")
    assert address.without_credentials() == ("rediss://h:6380/0",
                                              {"username": "spi@ral", "password": "p/w"})
    assert parse_redis_url("redis://h/0").without_credentials() == ("redis://h/0", {})


@pytest.mark.parametrize(("query", "problem"), [
    ("?ssl_ca_cert=/x", "unknown TLS parameter 'ssl_ca_cert'"),
    ("?ssl_cert_reqs=maybe", "ssl_cert_reqs='maybe': choose required, optional or none"),
    ("?ssl_ca_certs=/no/such/ca.pem", "ssl_ca_certs='/no/such/ca.pem': no such file"),
    ("?ssl_ca_certs=", "ssl_ca_certs is empty"),
    ("?ssl_certfile={pem}", "ssl_certfile and ssl_keyfile go together"),
    ("?ssl_cert_reqs=none&ssl_cert_reqs=required", "ssl_cert_reqs is given twice"),
])
def test_a_bad_tls_parameter_is_named(query: str, problem: str, pem: Path) -> None:
    url = f"rediss://spiral:{PASSWORD}@h:6380/0" + query.format(pem=pem)
    assert problem in (redis_url_problem(url) or "")


def test_tls_parameters_need_rediss(pem: Path) -> None:
    assert redis_url_problem(f"redis://h/0?ssl_ca_certs={pem}") == (
        "ssl_ca_certs: TLS parameters need a rediss:// URL (this one is redis://, which "
        "would send them in clear)")


@pytest.mark.parametrize("url", [
    f"redis://spiral:{PASSWORD}@host:port/0",
    f"redis://spiral:{PASSWORD}@host:6379/0/0",
    f"rediss://spiral:{PASSWORD}@host/0?ssl_ca_certs=/nowhere",
    f"rediss://spiral:{PASSWORD}@host/0?ssl_keyfile=/nowhere",
    # A password with unescaped reserved characters: urllib reads part of it as the
    # port or the path, and its own error would quote that part.
    "redis://spiral:12/Pa55-w0rd-e1c4@host:6379/0",
    "redis://:Pa55#w0rd-e1c4@host:6379/0",
    "redis://spiral:99#Pa55-w0rd-e1c4@host/0",
])
@pytest.mark.parametrize("variable", ["REDIS_URL", "SPIRAL_BROKER_URL", "SPIRAL_RESULT_BACKEND"])
def test_a_bad_url_is_named_without_its_password(url: str, variable: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({variable: url})
    message = str(caught.value)
    assert message.startswith(f"bad setting: {variable}=")
    for part in ("Pa55", "w0rd", "e1c4"):
        assert part not in message


@pytest.mark.parametrize("variable", ["SPIRAL_SIGIL_SECRET", "SPIRAL_ENCRYPTION_KEY",
                                      "FLOWER_BASIC_AUTH", "SPIRAL_SIGIL_SECRETS",
                                      "SOME_PASSWORD", "AN_API_TOKEN"])
def test_a_secret_variable_is_never_quoted(variable: str) -> None:
    read = Environment({variable: PASSWORD})
    read.problem(variable, PASSWORD, "not like that")
    assert read.problems == [f"{variable}=<hidden, {len(PASSWORD)} characters>: not like that"]


def test_settings_show_no_secret_in_their_repr() -> None:
    settings = Settings.from_env({"REDIS_URL": f"redis://spiral:{PASSWORD}@h/0",
                                  "SPIRAL_SIGIL_SECRET": PASSWORD})
    assert settings.redis_url == f"redis://spiral:{PASSWORD}@h/0"
    assert PASSWORD not in repr(settings)


def test_every_celery_client_gets_the_same_tls_options(pem: Path) -> None:
    url = (f"rediss://spiral:{PASSWORD}@h:6380/0?ssl_ca_certs={pem}&ssl_certfile={pem}"
           f"&ssl_keyfile={pem}")
    options = {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": str(pem),
               "ssl_certfile": str(pem), "ssl_keyfile": str(pem)}
    config = celery_config(Settings.from_env({"REDIS_URL": url}))
    assert config["result_backend"] == f"rediss://spiral:{PASSWORD}@h:6380/0"
    assert config["broker_url"] == (f"rediss://spiral:{PASSWORD}@h:6380/0?ssl_cert_reqs=required"
                                    f"&ssl_ca_certs={pem}&ssl_certfile={pem}&ssl_keyfile={pem}")
    # kombu reads the URL's parameters as the options (and would let them win).
    assert Connection(config["broker_url"]).ssl == options
    assert config["broker_use_ssl"] == config["redis_backend_use_ssl"] == options
    assert config["redbeat_redis_use_ssl"] == options
    assert config["redbeat_redis_url"] == "rediss://h:6380/0"
    assert config["redbeat_redis_options"] == {"username": "spiral", "password": PASSWORD}


def test_plain_redis_gets_no_tls_options_and_the_embedded_broker_none_at_all() -> None:
    config = celery_config(Settings.from_env({"REDIS_URL": "redis://h:6379/0"}))
    assert not {"broker_use_ssl", "redis_backend_use_ssl", "redbeat_redis_use_ssl"} & set(config)
    assert config["redbeat_redis_options"] == {}
    embedded = celery_config(Settings.from_env({}))
    assert embedded["broker_url"].startswith("spiral-sqlite://")
    assert "redbeat_redis_url" not in embedded


def test_the_configuration_celery_shows_holds_no_password(pem: Path) -> None:
    """What `celery inspect conf` answers, and Flower's worker page shows: Celery hides
    the settings whose names say secret, and masks the broker's and the results' URLs;
    celery-redbeat's URL carries no credentials for it to miss."""
    config = celery_config(Settings.from_env({
        "REDIS_URL": f"rediss://spiral:{PASSWORD}@h:6380/0?ssl_ca_certs={pem}"}))
    assert PASSWORD not in repr(filter_hidden_settings(config))
