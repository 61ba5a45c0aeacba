"""ClientConfig: every invalid option raises ConfigError naming it."""

from __future__ import annotations

import dataclasses
import inspect
import itertools
import os
import typing
import warnings
from collections.abc import Callable

import pytest

import zen_websocket as zw
from zen_websocket.config import (
    EVENTS,
    ClientConfig,
    HeartbeatConfig,
    check_callback,
    options_doc,
    options_signature,
)

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
        ({"subscription_format": "kraken"}, "subscription_format"),
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
        ({"write_timeout": 0}, "write_timeout"),
        ({"write_timeout": -1}, "write_timeout"),
        ({"write_timeout": "10"}, "write_timeout"),
        ({"write_timeout": True}, "write_timeout"),
        ({"write_timeout": float("inf")}, "write_timeout"),
        ({"compression": "gzip"}, "compression"),
        ({"compression": ""}, "compression"),
        ({"compression": "DEFLATE"}, "compression"),
        ({"compression": True}, "compression"),
        ({"max_connection_age": 0}, "max_connection_age"),
        ({"max_connection_age": -3600}, "max_connection_age"),
        ({"max_connection_age": float("nan")}, "max_connection_age"),
        ({"max_connection_age": "1h"}, "max_connection_age"),
        ({"proxy": "http://"}, "proxy"),
        ({"proxy": "socks5://:1080"}, "proxy"),
        ({"proxy": "proxy.example:3128"}, "proxy"),
        ({"proxy": 3128}, "proxy"),
        ({"proxy": b"http://proxy:3128"}, "proxy"),
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
    assert config.compression == "deflate"
    assert config.write_timeout == 10.0
    assert config.max_connection_age is None
    assert config.debug is False
    assert config.name is None and config.record_to is None and config.proxy is None


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
    assert repr(client.config) == (
        "ClientConfig(url='wss://127.0.0.1:1/ws?apiKey=***&stream=***', name=None, headers={'Authorization': '***'})"
    )


def test_the_repr_shows_harmless_header_values_only():
    config = ClientConfig.from_options(URL, headers={"User-Agent": "bot/1", "X-MBX-APIKEY": "K"}, name="n")
    assert (
        repr(config)
        == "ClientConfig(url='ws://127.0.0.1:9', name='n', headers={'User-Agent': 'bot/1', 'X-MBX-APIKEY': '***'})"
    )


@pytest.mark.parametrize(
    ("options", "attribute", "stored"),
    [
        ({"write_timeout": None}, "write_timeout", None),
        ({"write_timeout": 1}, "write_timeout", 1),
        ({"write_timeout": 0.25}, "write_timeout", 0.25),
        ({"compression": None}, "compression", None),
        ({"compression": "deflate"}, "compression", "deflate"),
        ({"max_connection_age": 23 * 3600}, "max_connection_age", 82800),
        ({"max_connection_age": None}, "max_connection_age", None),
        ({"proxy": "http://proxy.example:3128"}, "proxy", "http://proxy.example:3128"),
        ({"proxy": "socks5://user:pw@127.0.0.1:1080"}, "proxy", "socks5://user:pw@127.0.0.1:1080"),
        ({"proxy": "socks5h://127.0.0.1:1080"}, "proxy", "socks5h://127.0.0.1:1080"),
        ({"proxy": "socks4://127.0.0.1"}, "proxy", "socks4://127.0.0.1"),
        ({"proxy": "socks4a://127.0.0.1"}, "proxy", "socks4a://127.0.0.1"),
        ({"proxy": None}, "proxy", None),
    ],
)
def test_valid_options_are_stored(options, attribute, stored):
    assert getattr(ClientConfig.from_options(URL, **options), attribute) == stored


def test_option_errors_say_what_was_expected():
    def message(**options):
        with pytest.raises(zw.ConfigError) as info:
            ClientConfig.from_options(URL, **options)
        return str(info.value)

    assert message(compression="gzip") == "compression: must be 'deflate' or None, got 'gzip'"
    assert message(write_timeout=0) == "write_timeout: must be positive, got 0"
    assert message(max_connection_age="1h") == "max_connection_age: must be a number of seconds, got str"
    assert message(proxy="ftp://user:pw@proxy:21") == "proxy: must be an http:// or socks5:// URL with a host"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ws://user:pw123@/x?token=tok123", "url: has no host: 'ws:///x?token=***'"),
        ("http://user:pw123@host/?token=tok123", "url: must start with ws:// or wss://, got 'http://host/?token=***'"),
        (
            "ws://user:pw123@host:99999/?token=tok123",
            "url: invalid URL (bad IPv6 host or port) 'ws://host:99999/?token=***'",
        ),
        ("ws://user:pw123/x?token=tok123", "url: invalid URL (bad IPv6 host or port) 'ws://user:***/x?token=***'"),
        ("ws://[::1/x?token=tok123", "url: invalid URL (bad IPv6 host or port) '***'"),
        (f"http://h/ws/{'k' * 60}", "url: must start with ws:// or wss://, got 'http://h/ws/***'"),
    ],
)
def test_url_errors_never_show_credentials(url, message):
    with pytest.raises(zw.ConfigError) as info:
        ClientConfig.from_options(url)
    assert str(info.value) == message
    assert "pw123" not in str(info.value) and "tok123" not in str(info.value)
    assert info.value.option == "url"


def test_an_invalid_url_error_chains_the_parser_error():
    with pytest.raises(zw.ConfigError) as info:
        ClientConfig.from_options("ws://host:99999/")
    assert isinstance(info.value.__cause__, ValueError)


class _ConsumeOnly:
    def consume(self, message):
        return None


class _AcquireOnly:
    def acquire(self, message):
        return None


class _Limiter(_ConsumeOnly, _AcquireOnly):
    pass


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"timeout": None}, "timeout: must be a positive number, not None"),
        ({"timeout": True}, "timeout: must be a number of seconds, got bool"),
        ({"timeout": float("inf")}, "timeout: must be positive, got inf"),
        ({"retry_delay": 40.0}, "max_backoff: must be >= retry_delay (40.0), got 30.0"),
        ({"jitter": 1.01}, "jitter: must be a fraction between 0 and 1, got 1.01"),
        ({"jitter": True}, "jitter: must be a fraction between 0 and 1, got True"),
        ({"retry_count": -1}, "retry_count: must be a non-negative int or None, got -1"),
        ({"retry_count": True}, "retry_count: must be a non-negative int or None, got True"),
        ({"headers": {"Authorization": 7}}, "headers: must be a mapping of str to str"),
        ({"headers": [("Authorization", "secret-value")]}, "headers: must be a mapping of str to str"),
        ({"subprotocols": ["json", 2]}, "subprotocols: must be a list of str"),
        ({"ssl_context": object()}, "ssl_context: must be an ssl.SSLContext"),
        ({"is_fatal": "yes"}, "is_fatal: must be a predicate on an exception"),
        ({"max_queue": True}, "max_queue: must be a positive int or None, got True"),
        ({"max_queue": 1.0}, "max_queue: must be a positive int or None, got 1.0"),
        ({"overflow": "spill"}, "overflow: must be one of drop_oldest, drop_newest, block, got 'spill'"),
        ({"max_message_size": 0}, "max_message_size: must be a positive int or None, got 0"),
        ({"max_message_size": 1.5}, "max_message_size: must be a positive int or None, got 1.5"),
        (
            {"subscription_format": "kraken"},
            "subscription_format: unknown subscription format 'kraken'; expected one of deribit, binance, okx, bybit or a callable",
        ),
        ({"rate_limit_mode": "drop"}, "rate_limit_mode: must be 'wait' or 'raise', got 'drop'"),
        ({"rate_limiter": _ConsumeOnly()}, "rate_limiter: must be a RateLimiter (with consume() and acquire())"),
        ({"rate_limiter": _AcquireOnly()}, "rate_limiter: must be a RateLimiter (with consume() and acquire())"),
        ({"max_backoff": -1}, "max_backoff: must be positive, got -1"),
        ({"name": 7}, "name: must be a str"),
        ({"record_to": 7}, "record_to: must be a file path (str)"),
        ({"on_error": [print, 3]}, "on_error: must be callable"),
        ({"callbacks": {}}, "callbacks: unknown option"),
        (
            {"heartbeat_config": {"type": "morse"}},
            "heartbeat_config.type: unknown heartbeat type 'morse'; expected one of ping, deribit, custom",
        ),
        (
            {"heartbeat_config": {"type": "deribit", "interval": 9.5}},
            "heartbeat_config.interval: Deribit's minimum heartbeat interval is 10s, got 9.5",
        ),
        ({"heartbeat_config": {"timeout": 0}}, "heartbeat_config.timeout: must be positive, got 0"),
        (
            {"heartbeat_config": {"type": "custom"}},
            "heartbeat_config.message: a custom heartbeat needs a message to send",
        ),
        (
            {"heartbeat_config": {"type": "custom", "message": 3}},
            "heartbeat_config.message: must be str, bytes, dict or list",
        ),
        ({"heartbeat_config": {"expect": 3}}, "heartbeat_config.expect: must be a string or a predicate"),
        ({"heartbeat_config": {"every": 1}}, "heartbeat_config.every: unknown heartbeat option"),
        ({"heartbeat_config": 30}, "heartbeat_config: must be a dict, HeartbeatConfig or None, got int"),
    ],
)
def test_config_error_messages(options, message):
    with pytest.raises(zw.ConfigError) as info:
        ClientConfig.from_options(URL, **options)
    assert str(info.value) == message


def test_a_url_that_is_not_a_string_is_named_by_type():
    with pytest.raises(zw.ConfigError) as info:
        ClientConfig.from_options(42)  # type: ignore[arg-type]
    assert str(info.value) == "url: must be a str (or a callable returning one), got int"


def test_a_callable_url_is_checked_when_called_and_never_shown():
    def feed_url() -> str:
        return "wss://127.0.0.1/ws?listenKey=secret"

    config = ClientConfig.from_options(feed_url)
    assert config.url is feed_url
    assert config.label == "feed_url"
    assert repr(config) == "ClientConfig(url='<callable feed_url>', name=None, headers={})"
    assert ClientConfig.from_options(feed_url, name="n").label == "n"


def test_check_url_names_the_option_it_checks():
    from zen_websocket.config import check_url

    check_url("wss://127.0.0.1/ws")
    with pytest.raises(zw.ConfigError) as info:
        check_url("http://u:pw@h/?token=t", option="url()")
    assert str(info.value) == "url(): must start with ws:// or wss://, got 'http://h/?token=***'"


@pytest.mark.parametrize(
    "options",
    [
        {"retry_delay": 30.0},  # max_backoff may equal retry_delay
        {"jitter": 0},
        {"jitter": 1},
        {"jitter": 0.5},
        {"retry_count": 0},
        {"retry_count": None},
        {"max_queue": 1},
        {"max_message_size": 1},
        {"max_message_size": None},
        {"subprotocols": ["json", "v2"]},
        {"subprotocols": None},
        {"is_fatal": lambda exc: False},
        {"headers": None},
        {"subscription_format": "binance"},
        {"subscription_format": lambda channels, subscribe: {}},
        {"rate_limit_mode": "raise"},
        {"rate_limiter": _Limiter()},
        {"name": "feed"},
        {"record_to": "session.jsonl"},
        {"heartbeat_config": {"type": "deribit", "interval": 10}},
        {"heartbeat_config": {"type": "custom", "interval": 1, "message": b"ping", "expect": "pong"}},
        {"heartbeat_config": {"expect": lambda message: True}},
        {"heartbeat_config": HeartbeatConfig("ping", 5.0)},
    ],
)
def test_values_at_the_edges_are_accepted(options):
    ClientConfig.from_options(URL, **options)


def test_durations_are_stored_as_floats_and_configs_are_frozen():
    import dataclasses

    config = ClientConfig.from_options(URL, timeout=2, heartbeat_config={"interval": 3})
    assert config.headers == {}
    assert config.heartbeat_config == HeartbeatConfig("ping", 3.0, None, 3.0)
    assert isinstance(config.heartbeat_config.interval, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.timeout = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.heartbeat_config.interval = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("url", "name", "label"),
    [
        ("ws://127.0.0.1:9", None, "127.0.0.1:9"),
        ("ws://127.0.0.1", None, "127.0.0.1:80"),
        ("wss://127.0.0.1/ws", None, "127.0.0.1:443"),
        ("wss://127.0.0.1:9443/ws", "", "127.0.0.1:9443"),
        ("wss://127.0.0.1:9443/ws", "feed", "feed"),
    ],
)
def test_label_is_the_name_or_host_and_port(url, name, label):
    assert ClientConfig.from_options(url, name=name).label == label


def test_the_public_names():
    from zen_websocket import config

    assert config.__all__ == [
        "ClientConfig",
        "HeartbeatConfig",
        "EVENTS",
        "HEARTBEAT_TYPES",
        "OVERFLOW_POLICIES",
        "DERIBIT_MIN_HEARTBEAT_INTERVAL",
        "COMPRESSIONS",
        "check_url",
        "redact_url",
    ]
    assert all(hasattr(config, name) for name in config.__all__)
    assert config.COMPRESSIONS == ("deflate",)
    assert config.EVENTS == ("message", "connect", "disconnect", "reconnect", "error", "close")


# --- times that look like milliseconds -----------------------------------------------------------

# Where a millisecond warning must point: this file (the caller's line). Under
# mutation testing (scripts/mutation.py) mutmut's trampolines, frames of its
# own module, sit between the library's frames, so the library cannot see
# through them to the caller: the check is only meaningful without them.
USERS_FILE = __file__ if "MUTANT_UNDER_TEST" not in os.environ else zw.config.__file__


def test_a_time_of_1000_seconds_or_more_warns_with_the_millisecond_reading():
    with pytest.warns(UserWarning) as caught:
        ClientConfig.from_options(URL, timeout=5000)
    (warning,) = caught
    assert warning.category is UserWarning
    assert str(warning.message) == (
        "timeout=5000 is 83 minutes: times are in seconds, not milliseconds (for 5000 ms write timeout=5)"
    )
    assert warning.filename == USERS_FILE  # the user's line, not the library's


def test_the_millisecond_warning_starts_at_exactly_1000_seconds():
    with pytest.warns(UserWarning) as caught:
        ClientConfig.from_options(URL, retry_delay=1000.0, max_backoff=1000.0)
    assert [str(w.message) for w in caught] == [
        f"{option}=1000 is 17 minutes: times are in seconds, not milliseconds (for 1000 ms write {option}=1)"
        for option in ("retry_delay", "max_backoff")
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ClientConfig.from_options(URL, timeout=999.9, retry_delay=999.9, max_backoff=999.9, request_timeout=999.9)


@pytest.mark.parametrize(
    "option", ["timeout", "retry_delay", "max_backoff", "request_timeout", "close_timeout", "write_timeout"]
)
def test_every_client_time_is_checked_for_milliseconds(option):
    options = {option: 30_000}
    if option == "retry_delay":
        options["max_backoff"] = 30_000
    with pytest.warns(UserWarning) as caught:
        ClientConfig.from_options(URL, **options)
    expected = [f"{option}=30000"] + (["max_backoff=30000"] if option == "retry_delay" else [])
    assert [str(w.message).partition(" is ")[0] for w in caught] == expected


def test_heartbeat_times_are_checked_for_milliseconds_naming_the_option():
    with pytest.warns(UserWarning) as caught:
        HeartbeatConfig("ping", 30_000.0, timeout=5000)
    assert [str(w.message) for w in caught] == [
        "heartbeat_config.interval=30000 is 500 minutes: times are in seconds, not milliseconds "
        "(for 30000 ms write heartbeat_config.interval=30)",
        "heartbeat_config.timeout=5000 is 83 minutes: times are in seconds, not milliseconds "
        "(for 5000 ms write heartbeat_config.timeout=5)",
    ]
    assert all(w.filename == USERS_FILE for w in caught)


def test_the_warning_names_the_users_line_through_nested_library_calls():
    from zen_websocket.platforms import deribit

    with pytest.warns(UserWarning, match="heartbeat_config.interval=3000") as caught:
        ClientConfig.from_options(URL, heartbeat_config={"interval": 3000})
    assert caught[0].filename == USERS_FILE
    with pytest.warns(UserWarning, match="heartbeat_config.interval=3000") as caught:
        deribit.options(heartbeat_interval=3000)
    assert caught[0].filename == USERS_FILE


# --- heartbeat details ---------------------------------------------------------------------------


def test_an_explicit_heartbeat_timeout_is_kept_and_the_default_is_the_interval():
    assert HeartbeatConfig("ping", 5.0, timeout=2).timeout == 2.0
    assert HeartbeatConfig("ping", 5.0).timeout == 5.0


def test_min_interval_is_stored_as_float_and_validated_by_name():
    config = HeartbeatConfig("deribit", 1.5, min_interval=1)
    assert config.min_interval == 1.0 and isinstance(config.min_interval, float)
    assert HeartbeatConfig("ping", 1.0).min_interval is None
    with pytest.raises(zw.ConfigError) as info:
        HeartbeatConfig("ping", 1.0, min_interval=-1)
    assert info.value.option == "heartbeat_config.min_interval"


def test_a_deribit_interval_may_equal_min_interval_but_not_go_below():
    assert HeartbeatConfig("deribit", 0.5, min_interval=0.5).interval == 0.5
    with pytest.raises(zw.ConfigError) as info:
        HeartbeatConfig("deribit", 0.49, min_interval=0.5)
    assert info.value.option == "heartbeat_config.interval"
    assert str(info.value) == "heartbeat_config.interval: below min_interval (0.5s), got 0.49"


def test_deribit_rejects_fractions_naming_the_interval():
    with pytest.raises(zw.ConfigError) as info:
        HeartbeatConfig("deribit", 10.5)
    assert info.value.option == "heartbeat_config.interval"


def test_fractions_are_whole_seconds_only_while_the_deribit_minimum_is_a_second_or_more(monkeypatch):
    from zen_websocket import config

    monkeypatch.setattr(config, "DERIBIT_MIN_HEARTBEAT_INTERVAL", 1.0)
    with pytest.raises(zw.ConfigError, match="whole number"):
        HeartbeatConfig("deribit", 1.5)
    monkeypatch.setattr(config, "DERIBIT_MIN_HEARTBEAT_INTERVAL", 0.5)
    assert HeartbeatConfig("deribit", 1.5).interval == 1.5


# --- option names in errors ----------------------------------------------------------------------


@pytest.mark.parametrize("option", ["reconnect_on_error", "restore_subscriptions", "debug"])
def test_switches_must_be_real_bools_naming_the_option(option):
    with pytest.raises(zw.ConfigError) as info:
        ClientConfig.from_options(URL, **{option: "no"})
    assert info.value.option == option


def test_callbacks_is_not_an_option():
    with pytest.raises(zw.ConfigError) as info:
        ClientConfig.from_options(URL, callbacks={"message": (print,)})
    assert info.value.option == "callbacks"


def test_an_unknown_option_suggests_the_closest_name():
    with pytest.raises(zw.ConfigError) as info:
        ClientConfig.from_options(URL, timout=1)
    assert str(info.value) == "timout: unknown option; did you mean 'timeout'?"
    with pytest.raises(zw.ConfigError) as info:
        ClientConfig.from_options(URL, on_mesage=print)
    assert str(info.value).endswith("; did you mean 'on_message'?")
    with pytest.raises(zw.ConfigError) as info:
        ClientConfig.from_options(URL, zzzz=1)
    assert str(info.value) == "zzzz: unknown option"


# --- callback signatures -------------------------------------------------------------------------


def test_a_callback_with_the_wrong_signature_is_refused_saying_how_it_is_called():
    def on_message(data):
        return None

    with pytest.raises(TypeError) as info:
        check_callback("message", on_message)
    assert str(info.value) == (
        "the 'message' callback test_a_callback_with_the_wrong_signature_is_refused_saying_how_it_is_called."
        "<locals>.on_message(data) cannot be called as fn(client, data): "
        "message callbacks are called with (client, data)"
    )


def test_a_callable_object_with_the_wrong_signature_is_named_by_its_class():
    class Handler:
        def __call__(self, client):
            return None

    with pytest.raises(TypeError) as info:
        check_callback("close", Handler())
    assert str(info.value) == (
        "the 'close' callback Handler(client) cannot be called as fn(client, code, reason): "
        "close callbacks are called with (client, code, reason)"
    )


def test_callbacks_with_a_fitting_signature_pass():
    check_callback("message", lambda client, data: None)
    check_callback("close", lambda *args: None)
    check_callback("connect", print)


# --- the generated options signature and docs ----------------------------------------------------


def test_options_signature_lists_every_option_keyword_only_with_its_default():
    leading = inspect.Parameter("url", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    signature = options_signature(leading, returns=int)
    params = list(signature.parameters.values())
    assert params[0] is leading
    assert signature.return_annotation is int
    names = [p.name for p in params[1:]]
    fields = [f.name for f in dataclasses.fields(ClientConfig) if f.name not in ("url", "callbacks")]
    assert names == fields + [f"on_{event}" for event in EVENTS]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params[1:])
    by_name = signature.parameters
    assert by_name["timeout"].default == 5.0 and by_name["timeout"].annotation is float
    assert by_name["headers"].default == {}
    assert by_name["heartbeat_config"].default == HeartbeatConfig()
    assert by_name["compression"].default == "deflate"
    assert by_name["on_message"].default is None
    assert by_name["on_message"].annotation == (Callable | list | None)
    assert options_signature().return_annotation is inspect.Signature.empty


def test_options_signature_without_evaluable_annotations_still_lists_the_options(monkeypatch):
    def broken(obj, *args, **kwargs):
        raise NameError("an annotation this Python cannot evaluate")

    monkeypatch.setattr(typing, "get_type_hints", broken)
    signature = options_signature()
    assert signature.parameters["timeout"].annotation is inspect.Parameter.empty
    assert signature.parameters["timeout"].default == 5.0


def test_options_doc_lists_every_option_with_its_default_wrapped_and_indented():
    doc = options_doc()
    head = "\n    Options (keyword-only; times in seconds; the README's options table says what each does)::\n\n"
    assert doc.startswith(head) and doc.endswith("\n") and not doc.endswith("\n\n")
    lines = doc[len(head) : -1].split("\n")
    assert len(lines) > 3
    for line in lines:
        assert line.startswith(" " * 8) and line[8] != " " and len(line) <= 92
    for line, following in itertools.pairwise(lines):
        assert len(line) + 1 + len(following.split()[0]) > 92  # filled greedily
    text = " ".join(line.strip() for line in lines)
    assert text.startswith("timeout=5.0, headers={}, subprotocols=None, ")
    assert "heartbeat_config={'type': 'ping', 'interval': 30.0}, " in text
    assert "compression='deflate', " in text
    assert text.endswith("on_error=None, on_close=None")
