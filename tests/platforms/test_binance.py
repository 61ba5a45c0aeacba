"""The Binance adapter against the Binance emulator on loopback: combined streams with rotation
(24 h cut scaled, serverShutdown) losing nothing, the 5 messages/s limit with pongs, futures user
data (listen key created, kept alive, renewed, deleted), WebSocket API weights and 429/418, secrets."""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from typing import Any

import pytest

import zen_websocket as zw
from tests.timeunit import ms, wait_until
from zen_websocket.platforms import binance
from zen_websocket.ratelimit import FixedWindowLimiter, binance_cost
from zen_websocket.subscriptions import BinanceDialect
from zen_websocket.testing import BinanceEmulator
from zen_websocket.testing.binance import MAX_CONNECTION_AGE

API_KEY = "zwTESTapiKEY0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJ"
FAST = {"retry_delay": ms(20), "max_backoff": ms(100), "request_timeout": 5.0, "close_timeout": 1.0}


class TradeIds:
    """Collects aggTrade ids from a combined stream (a message callback: both connections of a rotation deliver)."""

    def __init__(self, stream: str = "btcusdt@aggTrade") -> None:
        self.stream = stream
        self.ids: set[int] = set()
        self.others: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def __call__(self, client: zw.Client, data: Any) -> None:
        message = json.loads(data)
        with self.lock:
            if message.get("stream") == self.stream:
                self.ids.add(message["data"]["a"])
            else:
                self.others.append(message)

    def missing(self, count: int) -> list[int]:
        with self.lock:
            return sorted(set(range(1, count + 1)) - self.ids)


# -- presets -----------------------------------------------------------------------------------


def test_stream_url_builds_the_combined_stream_url():
    assert binance.stream_url(["btcusdt@aggTrade", "ethusdt@bookTicker"]) == (
        "wss://stream.binance.com:9443/stream?streams=btcusdt@aggTrade/ethusdt@bookTicker"
    )
    assert (
        binance.stream_url("btcusdt@trade", base="ws://127.0.0.1:9/") == "ws://127.0.0.1:9/stream?streams=btcusdt@trade"
    )
    assert binance.stream_url([]) == "wss://stream.binance.com:9443/stream"
    with pytest.raises(zw.ConfigError):
        binance.stream_url(["a/b"])


def test_options_are_the_binance_presets_fresh_for_each_connection():
    first, second = binance.options(), binance.options(name="x")
    dialect = first["subscription_format"]
    assert isinstance(dialect, BinanceDialect) and dialect.rotate_on_shutdown and dialect.max_channels == 1024
    assert first["rate_limiter"] is not second["rate_limiter"] and dialect is not second["subscription_format"]
    assert first["heartbeat_config"] is None and first["max_silence"] == 60.0
    assert 23 * 3600 <= first["max_connection_age"] < MAX_CONNECTION_AGE
    assert second["name"] == "x"
    zw.Client("ws://127.0.0.1:1/stream", **first)  # valid client options


# -- combined streams ---------------------------------------------------------------------------


def test_connect_subscribes_live_on_a_combined_stream_and_consumes_the_acks():
    with BinanceEmulator(ping_interval=None) as emu:
        with binance.connect(["btcusdt@aggTrade", "ethusdt@bookTicker"], url=emu.url, **FAST) as client:
            assert emu.handshake_paths == ["/stream"]
            assert emu.control_messages[0]["params"] == ["btcusdt@aggTrade", "ethusdt@bookTicker"]
            assert client.subscriptions == ["btcusdt@aggTrade", "ethusdt@bookTicker"]
            emu.publish("ethusdt@bookTicker", {"u": 1})
            assert client.recv_json(timeout=2) == {"stream": "ethusdt@bookTicker", "data": {"u": 1}}  # no ack first


def test_connect_with_a_refused_stream_raises_and_closes_the_client():
    with BinanceEmulator(ping_interval=None, error_shape="docs") as emu:
        with pytest.raises(zw.SubscriptionError) as info:
            binance.connect(["btcusdt@aggTrade", "BTCUSDT@nope"], url=emu.url, **FAST)
        assert info.value.channels == ["btcusdt@aggTrade", "BTCUSDT@nope"]
        assert wait_until(lambda: emu.connections == [])


def test_rotation_before_the_24_hour_cut_loses_nothing():
    """Emulated 24 h cut at 400 ms, client rotation at 200 ms: no drop, every trade id seen."""
    cut = ms(400)
    with BinanceEmulator(ping_interval=None, time_scale=cut / MAX_CONNECTION_AGE) as emu:
        trades = TradeIds()
        client = binance.connect(
            ["btcusdt@aggTrade"], url=emu.url, max_connection_age=cut / 2, on_message=trades, **FAST
        )
        with client:
            count = 400
            feed = emu.start_trades("btcusdt@aggTrade", interval=ms(3), count=count)
            assert wait_until(lambda: not feed.running, 20)
            assert wait_until(lambda: not trades.missing(count), 5), trades.missing(count)[:20]
            metrics = client.get_state_metrics()
        assert emu.connection_count >= 3
        assert metrics["reconnects"] == 0  # every change was a rotation, never a drop
        assert emu.violations == []


def test_server_shutdown_rotates_make_before_break_and_stays_in_the_queue():
    with BinanceEmulator(ping_interval=None) as emu:
        with binance.connect(["btcusdt@aggTrade"], url=emu.url, **FAST) as client:
            count = 200
            feed = emu.start_trades("btcusdt@aggTrade", interval=ms(2), count=count)
            assert wait_until(lambda: feed.sent >= 30)  # the feed runs on the first connection a while
            emu.server_shutdown(close_after=ms(300))
            ids: set[int] = set()
            shutdowns = []
            deadline = time.monotonic() + 10
            while len(ids) < count and time.monotonic() < deadline:
                message = client.recv_json(timeout=5)
                if message["stream"] == "!serverShutdown":
                    shutdowns.append(message)
                else:
                    ids.add(message["data"]["a"])
            assert ids == set(range(1, count + 1))
            assert [m["data"]["e"] for m in shutdowns] == ["serverShutdown"]  # delivered, not stolen
            assert emu.connection_count == 2 and client.get_state_metrics()["reconnects"] == 0
            assert wait_until(lambda: len(emu.connections) == 1)


def test_the_outgoing_limit_counts_pongs_and_keeps_the_connection():
    """50 server pings a second plus subscribes: at most 5 frames in any second, pongs skipped beyond."""
    with BinanceEmulator(ping_interval=ms(20), pong_timeout=None) as emu:
        with binance.connect(["btcusdt@aggTrade"], url=emu.url, **FAST) as client:
            for i in range(4):
                client.subscribe(f"s{i}usdt@trade", wait=True)
            assert wait_until(lambda: emu.pings_sent >= 100 and len(emu.pongs_received) >= 3, 10)
            assert client.get_state() == "connected"
            assert client.get_state_metrics()["pongs_skipped"] > 0
        assert emu.violations == [] and emu.connection_count == 1


def test_without_the_limiter_the_same_traffic_is_cut():
    """The control for the test above: the emulator does disconnect a client that sends too much."""
    with BinanceEmulator(ping_interval=ms(20), pong_timeout=None) as emu:
        with binance.connect(["btcusdt@aggTrade"], url=emu.url, rate_limiter=None, **FAST):
            assert wait_until(lambda: emu.violations != [], 5)


# -- futures user data ----------------------------------------------------------------------------


@pytest.fixture
def futures():
    with BinanceEmulator(ping_interval=None, api_keys=[API_KEY]) as emu:
        yield emu


def user_data(emu: BinanceEmulator, **options: Any) -> zw.Client:
    options = {"keepalive": 60.0, **FAST, **options}
    return binance.user_data_connect(API_KEY, rest_url=emu.rest_url, ws_url=emu.url, **options)


def test_user_data_creates_the_listen_key_before_connecting_and_deletes_it_on_close(futures):
    with user_data(futures) as client:
        (key,) = futures.listen_keys
        post = futures.rest_calls[0]
        assert (post.method, post.status, post.listen_key, post.api_key_ok) == ("POST", 200, key, True)
        assert futures.handshake_paths == [f"/ws/{key}"]
        assert post.at <= futures.all_connections[0].opened_at
        futures.publish_user_event({"e": "ORDER_TRADE_UPDATE", "o": {"i": 1}})
        assert client.recv_json(timeout=2)["o"] == {"i": 1}
    assert futures.rest_calls[-1].method == "DELETE" and futures.rest_calls[-1].status == 200
    assert futures.listen_keys == []


def test_user_data_keeps_the_key_alive_every_keepalive(futures):
    with user_data(futures, keepalive=ms(40)):
        assert wait_until(lambda: sum(c.method == "PUT" and c.status == 200 for c in futures.rest_calls) >= 3, 5)
    puts = [c.at for c in futures.rest_calls if c.method == "PUT"]
    assert all(later - earlier >= ms(20) for earlier, later in itertools.pairwise(puts))


def test_listen_key_expired_brings_a_new_key_and_a_new_url(futures):
    with user_data(futures) as client:
        (old,) = futures.listen_keys
        futures.expire_listen_key()
        assert client.recv_json(timeout=2)["e"] == "listenKeyExpired"  # still delivered
        assert wait_until(lambda: futures.connection_count == 2 and len(futures.connections) == 1, 5)
        (new,) = futures.listen_keys
        assert new != old and futures.handshake_paths[-1] == f"/ws/{new}"
        futures.publish_user_event({"e": "ACCOUNT_UPDATE", "n": 2})
        assert client.recv_json(timeout=2)["n"] == 2
        assert client.get_state_metrics()["reconnects"] == 0
    assert [c.method for c in futures.rest_calls] == ["POST", "POST", "DELETE"]


def test_a_key_gone_without_an_event_is_replaced_at_the_next_keepalive(futures):
    with user_data(futures, keepalive=ms(40)) as client:
        (old,) = futures.listen_keys
        futures.expire_listen_key(notify=False)
        assert wait_until(lambda: futures.connection_count == 2 and futures.listen_keys not in ([], [old]), 5)
        failed = [c for c in futures.rest_calls if c.method == "PUT" and c.status == 400]
        assert failed
        futures.publish_user_event({"e": "ACCOUNT_UPDATE", "n": 3})
        assert client.recv_json(timeout=2)["n"] == 3


def test_a_reconnect_asks_for_the_key_again(futures):
    reconnected = threading.Event()
    with user_data(futures, on_reconnect=lambda client, attempt: reconnected.set()):
        futures.drop_connections()
        assert reconnected.wait(5)
    assert [c.method for c in futures.rest_calls] == ["POST", "POST", "DELETE"]


def test_listen_key_calls_ignore_environment_proxies(futures, monkeypatch):
    """As the WebSocket does: a proxy named by the environment (dead here) is not used."""
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    with user_data(futures, retry_count=0):
        assert futures.listen_keys


def test_a_refused_api_key_is_fatal_at_once(futures):
    with pytest.raises(zw.ConnectError) as info:
        binance.user_data_connect("not-the-key", rest_url=futures.rest_url, ws_url=futures.url, **FAST)
    assert info.value.status_code == 401 and info.value.attempts == 1
    assert info.value.reason == "unauthorized"
    assert futures.connection_count == 0 and [c.method for c in futures.rest_calls] == ["POST"]


def test_secrets_never_reach_logs_reprs_errors_or_recordings(futures, tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="zen_websocket")
    recording = tmp_path / "session.jsonl"
    with user_data(futures, debug=True, record_to=str(recording)) as client:
        futures.expire_listen_key()
        assert wait_until(lambda: futures.connection_count == 2, 5)
        key = futures.listen_keys[0]
        # A long frame whose key straddles the 500 characters a debug line shows.
        note = '{"e":"NOTE","pad":"' + "x" * 436 + '","listenKey":"' + key + '"}'
        assert note.index(key) < 500 < note.index(key) + len(key)
        assert futures.publish_user_event(note, key) == 1
        assert wait_until(lambda: client.get_state_metrics()["messages_received"] >= 2, 5)  # expired + NOTE
        shown = [repr(client), str(client.get_state_metrics()), repr(client.config)]
    keys = {c.listen_key for c in futures.rest_calls if c.listen_key}
    assert len(keys) == 2
    with pytest.raises(zw.ConnectError) as info:
        binance.user_data_connect(API_KEY + "x", rest_url=futures.rest_url, ws_url=futures.url, **FAST)
    texts = {"log": caplog.text, "recording": recording.read_text(), "reprs": " ".join(shown), "error": str(info.value)}
    assert "listenKey" in texts["recording"] and "***" in texts["recording"]
    for secret in (API_KEY, *keys):
        for where, text in texts.items():
            assert secret not in text, f"a secret leaked into the {where}"
    stream = binance.ListenKeyStream(API_KEY)
    assert API_KEY not in repr(stream)


# -- WebSocket API ---------------------------------------------------------------------------------


def test_api_request_sends_the_binance_envelope_and_returns_the_result():
    with (
        BinanceEmulator(ping_interval=None) as emu,
        zw.connect(emu.url + "/ws-api/v3", **binance.api_options(**FAST)) as client,
    ):
        result = binance.api_request(client, "time")
        assert isinstance(result["serverTime"], int)
        (request,) = emu.api_requests
        assert set(request) == {"id", "method"} and request["method"] == "time"
        assert binance.api_request_async(client, "ping", {}).result(2) == {}


def test_429_raises_rate_limited_with_retry_after_and_418_after_repeats():
    with BinanceEmulator(ping_interval=None, api_weight_limit=40, ban_after=1) as emu:
        with zw.connect(emu.url + "/ws-api/v3", **binance.api_options(**FAST)) as client:
            binance.api_request(client, "exchangeInfo")
            binance.api_request(client, "exchangeInfo")
            with pytest.raises(zw.RateLimited) as limited:
                binance.api_request(client, "ping")
            assert limited.value.status == 429 and isinstance(limited.value, zw.JsonRpcError)
            assert 0 < limited.value.retry_after <= 60.0
            with pytest.raises(zw.RateLimited) as banned:
                binance.api_request_async(client, "ping").result(2)
            assert banned.value.status == 418 and banned.value.retry_after > 60.0  # the two-minute ban
            assert client.get_state() == "connected"


def test_requests_are_weighed_by_binance_cost_before_they_are_sent():
    weight = FixedWindowLimiter(40, 60.0, binance_cost)
    with BinanceEmulator(ping_interval=None) as emu:
        options = binance.api_options(rate_limiter=weight, rate_limit_mode="raise", **FAST)
        with zw.connect(emu.url + "/ws-api/v3", **options) as client:
            binance.api_request(client, "exchangeInfo")  # 20
            binance.api_request(client, "exchangeInfo")  # 40
            with pytest.raises(zw.RateLimited):
                binance.api_request(client, "exchangeInfo")
        assert len(emu.api_requests) == 2


def test_api_request_from_a_message_callback_is_refused():
    errors: list[BaseException] = []

    def on_message(client: zw.Client, data: Any) -> None:
        try:
            binance.api_request(client, "ping")
        except zw.UsageError as exc:
            errors.append(exc)

    with (
        BinanceEmulator(ping_interval=None) as emu,
        zw.connect(emu.url + "/ws-api/v3", **binance.api_options(**FAST)) as client,
    ):
        client.on("message", on_message)
        emu.inject_message({"hello": 1})
        assert wait_until(lambda: errors != [])
    with pytest.raises(TypeError):
        binance.api_request_async(client, "")
