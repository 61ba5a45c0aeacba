"""ClientConfig: every invalid option raises ConfigError naming it."""

from __future__ import annotations

import pytest

import zen_websocket as zw
from zen_websocket.config import ClientConfig, HeartbeatConfig

URL = "ws://127.0.0.1:9"


@pytest.mark.parametrize(
    ("options", "option"),
    [
        ({"timeout": 0}, "timeout"),
        ({"timeout": -1}, "timeout"),
        ({"timeout": "5"}, "timeout"),
        ({"retry_delay": -0.5}, "retry_delay"),
        ({"max_backoff": 0.5, "retry_delay": 1.0}, "max_backoff"),
        ({"jitter": -0.1}, "jitter"),
        ({"jitter": 1.5}, "jitter"),
        ({"retry_count": -1}, "retry_count"),
        ({"retry_count": 1.5}, "retry_count"),
        ({"request_timeout": 0}, "request_timeout"),
        ({"close_timeout": float("nan")}, "close_timeout"),
        ({"max_silence": 0}, "max_silence"),
        ({"max_queue": 0}, "max_queue"),
        ({"overflow": "spill"}, "overflow"),
        ({"max_message_size": -1}, "max_message_size"),
        ({"subscription_format": "okx"}, "subscription_format"),
        ({"rate_limit_mode": "sometimes"}, "rate_limit_mode"),
        ({"rate_limiter": object()}, "rate_limiter"),
        ({"headers": {"X": 1}}, "headers"),
        ({"subprotocols": "json"}, "subprotocols"),
        ({"ssl_context": "yes"}, "ssl_context"),
        ({"proxy": "ftp://proxy:21"}, "proxy"),
        ({"is_fatal": 3}, "is_fatal"),
        ({"heartbeat_config": {"type": "morse"}}, "heartbeat_config.type"),
        ({"heartbeat_config": {"type": "ping", "interval": 0}}, "heartbeat_config.interval"),
        ({"heartbeat_config": {"type": "ping", "interval": -1}}, "heartbeat_config.interval"),
        ({"heartbeat_config": {"type": "deribit", "interval": 5}}, "heartbeat_config.interval"),
        ({"heartbeat_config": {"type": "custom", "interval": 1}}, "heartbeat_config.message"),
        ({"heartbeat_config": {"type": "ping", "every": 1}}, "heartbeat_config.every"),
        ({"heartbeat_config": 30}, "heartbeat_config"),
        ({"on_message": "not callable"}, "on_message"),
        ({"retries": 3}, "retries"),
        ({"on_tick": print}, "on_tick"),
    ],
)
def test_invalid_option_raises_config_error_naming_it(options, option):
    with pytest.raises(zw.ConfigError) as info:
        zw.Client(URL, **options)
    assert info.value.option == option
    assert option in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1/", "127.0.0.1:80", "ws://", "wss:///path", "ws://host:99999/", "", 42]
)
def test_bad_url_raises_config_error(url):
    with pytest.raises(zw.ConfigError) as info:
        zw.Client(url)
    assert info.value.option == "url"


def test_defaults_match_the_design():
    config = ClientConfig.from_options(URL)
    assert config.timeout == 5.0
    assert config.retry_count == 3
    assert config.retry_delay == 1.0
    assert config.max_backoff == 30.0
    assert config.jitter == 0.0
    assert config.reconnect_on_error is True
    assert config.restore_subscriptions is True
    assert config.heartbeat_config == HeartbeatConfig("ping", 30.0)
    assert config.heartbeat_config.timeout == 30.0
    assert config.request_timeout == 30.0
    assert config.close_timeout == 2.0
    assert config.max_queue is None and config.overflow == "drop_oldest"
    assert config.max_message_size == 16 * 1024 * 1024
    assert config.subscription_format == "deribit"
    assert config.rate_limit_mode == "wait"


def test_heartbeat_none_disables_and_dict_is_coerced():
    assert ClientConfig.from_options(URL, heartbeat_config=None).heartbeat_config is None
    hb = ClientConfig.from_options(URL, heartbeat_config={"type": "custom", "interval": 2, "message": "ping"})
    assert hb.heartbeat_config == HeartbeatConfig("custom", 2.0, "ping", 2.0)


def test_callbacks_from_options_are_collected():
    def fn(*args):
        return None

    config = ClientConfig.from_options(URL, on_message=fn, on_error=[fn, fn])
    assert config.callbacks == {"message": (fn,), "error": (fn, fn)}


def test_secrets_stay_out_of_reprs():
    client = zw.Client(
        "wss://127.0.0.1:1/ws?apiKey=SECRETKEY&stream=btc", headers={"Authorization": "Bearer SECRETTOKEN"}
    )
    for text in (repr(client), repr(client.config), str(client.get_state_metrics())):
        assert "SECRETKEY" not in text
        assert "SECRETTOKEN" not in text
    assert "stream=btc" in repr(client.config)
