"""`PoolConfig` validation and how `LLMClient` and `http_client` take pool settings."""

from __future__ import annotations

import pydantic
import pytest

import surge
from surge import ConfigError, LLMClient, PoolConfig


def test_defaults_suit_llm_bursts() -> None:
    config = PoolConfig()
    assert config.max_connections >= 500
    assert config.read is not None
    assert config.read >= 300
    assert config.pool is None
    assert config.http2 is False


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_connections", 0),
        ("max_connections", -5),
        ("max_keepalive_connections", -1),
        ("keepalive_expiry", -1.0),
        ("connect", 0),
        ("read", -3),
        ("write", 0),
        ("pool", -0.5),
        ("http2", "perhaps"),
    ],
)
def test_bad_value_names_the_field(field: str, value: object) -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        PoolConfig(**{field: value})  # type: ignore[arg-type]
    assert field in str(info.value)


def test_unknown_field_is_refused() -> None:
    with pytest.raises(pydantic.ValidationError, match="max_conections"):
        PoolConfig(max_conections=5)  # type: ignore[call-arg]


def test_config_is_frozen_and_copyable() -> None:
    config = PoolConfig(max_connections=10)
    with pytest.raises(pydantic.ValidationError):
        config.max_connections = 20  # type: ignore[misc]
    assert config.model_copy(update={"http2": True}).http2 is True


def test_repr_shows_only_changed_fields() -> None:
    assert (
        repr(PoolConfig(max_connections=7, http2=True))
        == "PoolConfig(max_connections=7, http2=True)"
    )
    assert repr(PoolConfig()) == "PoolConfig()"


def test_client_takes_pool_kwargs() -> None:
    client = LLMClient(base_url="http://127.0.0.1:9/v1", max_connections=500, http2=True)
    assert client.pool_config == PoolConfig(max_connections=500, http2=True)


def test_client_takes_a_pool_config() -> None:
    config = PoolConfig(max_connections=3)
    assert LLMClient(base_url="http://127.0.0.1:9/v1", pool=config).pool_config is config


def test_pool_and_pool_kwargs_conflict() -> None:
    with pytest.raises(ConfigError, match="not both"):
        LLMClient(base_url="http://127.0.0.1:9/v1", pool=PoolConfig(), max_connections=5)


def test_unknown_keyword_is_named() -> None:
    with pytest.raises(ConfigError, match="max_conns"):
        LLMClient(base_url="http://127.0.0.1:9/v1", max_conns=5)


def test_pool_kwarg_out_of_range_names_the_field() -> None:
    with pytest.raises(pydantic.ValidationError, match="max_connections"):
        LLMClient(base_url="http://127.0.0.1:9/v1", max_connections=0)


def test_http_client_and_pool_settings_conflict() -> None:
    with pytest.raises(ConfigError, match="http_client"):
        LLMClient(
            base_url="http://127.0.0.1:9/v1",
            http_client=surge.http_client(),
            max_connections=5,
        )


def test_http_client_must_be_httpx() -> None:
    with pytest.raises(ConfigError, match=r"httpx\.AsyncClient"):
        LLMClient(base_url="http://127.0.0.1:9/v1", http_client=object())  # type: ignore[arg-type]


def test_http_client_helper_validates_like_the_client() -> None:
    with pytest.raises(ConfigError, match="not both"):
        surge.http_client(PoolConfig(), http2=True)
    with pytest.raises(pydantic.ValidationError, match="max_keepalive_connections"):
        surge.http_client(max_keepalive_connections=-1)


@pytest.mark.parametrize("url", ["127.0.0.1:8080/v1", "ftp://host/v1", "http:///v1", ""])
def test_bad_base_url(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    if url == "":
        # An empty base_url falls back to the environment, then OpenAI's.
        assert LLMClient(base_url=url).base_url == "https://api.openai.com/v1"
        return
    with pytest.raises(ConfigError, match="base_url"):
        LLMClient(base_url=url)


def test_base_url_with_credentials_is_refused() -> None:
    with pytest.raises(ConfigError, match="api_key"):
        LLMClient(base_url="http://user:secret@127.0.0.1:9/v1")


def test_environment_fallbacks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:4321/v1/")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env-123456")
    client = LLMClient()
    assert client.base_url == "http://127.0.0.1:4321/v1"
    assert "sk-from-env-123456" not in repr(client)
    assert "api_key=<set>" in repr(client)


def test_explicit_arguments_beat_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:4321/v1")
    assert LLMClient(base_url="http://127.0.0.1:1/v1").base_url == "http://127.0.0.1:1/v1"


def test_bad_timeout() -> None:
    with pytest.raises(ConfigError, match="timeout"):
        LLMClient(base_url="http://127.0.0.1:9/v1", timeout=0)


def test_with_options_keeps_the_pool_and_validates() -> None:
    client = LLMClient(base_url="http://127.0.0.1:9/v1", model="a", max_connections=9)
    other = client.with_options(model="b", timeout=5)
    assert other.model == "b"
    assert client.model == "a"
    assert other.pool_config is client.pool_config
    with pytest.raises(ConfigError, match="base_url"):
        client.with_options(base_url="nope")


def test_a_number_for_pool_is_the_pool_timeout() -> None:
    # `pool` names both the PoolConfig argument and the pool-timeout field.
    client = LLMClient(base_url="http://127.0.0.1:9/v1", max_connections=1, pool=0.5)
    assert client.pool_config == PoolConfig(max_connections=1, pool=0.5)
    with pytest.raises(pydantic.ValidationError, match="pool"):
        LLMClient(base_url="http://127.0.0.1:9/v1", pool=-1.0)


def test_environment_key_is_not_sent_to_listed_endpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-only-for-openai")
    endpoints = [surge.Endpoint("http://127.0.0.1:1/v1"), surge.Endpoint("http://127.0.0.1:2/v1")]
    client = LLMClient(endpoints=endpoints)
    assert client._settings.key_for(endpoints[1]) is None
    explicit = LLMClient(endpoints=endpoints, api_key="sk-explicit")
    assert explicit._settings.key_for(endpoints[1]) == "sk-explicit"
