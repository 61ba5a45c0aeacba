"""The OKX and Bybit presets against their emulators on loopback: acks without a JSON-RPC id are
checked (and consumed), refusals leave the restore set, restores are acknowledged, heartbeats work."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import zen_websocket as zw
from tests.timeunit import ms, wait_until
from zen_websocket import telemetry
from zen_websocket.platforms import bybit, okx
from zen_websocket.testing import BybitEmulator, OkxEmulator

FAST = {"retry_delay": ms(20), "max_backoff": ms(100), "request_timeout": 5.0, "close_timeout": 1.0}


@pytest.fixture
def restores():
    seen: list[dict[str, Any]] = []
    telemetry.attach("okx-bybit-restore", telemetry.SUBSCRIPTION_RESTORE, lambda e, m, meta, c: seen.append(m))
    yield seen
    telemetry.detach("okx-bybit-restore")


# -- OKX -------------------------------------------------------------------------------------------


def test_okx_connect_subscribes_and_the_acks_are_consumed():
    with OkxEmulator() as emu, okx.connect(["tickers:BTC-USDT", "books5:ETH-USDT"], url=emu.url, **FAST) as client:
        assert emu.all_subscriptions == {"tickers:BTC-USDT", "books5:ETH-USDT"}
        request = emu.requests[0]
        assert request["op"] == "subscribe" and request["id"].startswith("zw")
        assert request["args"] == [
            {"channel": "tickers", "instId": "BTC-USDT"},
            {"channel": "books5", "instId": "ETH-USDT"},
        ]
        emu.publish("tickers:BTC-USDT", {"last": "97000"})
        assert client.recv_json(timeout=2) == {
            "arg": {"channel": "tickers", "instId": "BTC-USDT"},
            "data": [{"last": "97000"}],
        }


def test_okx_refused_channel_raises_and_leaves_the_restore_set():
    errors: list[BaseException] = []
    with OkxEmulator() as emu, okx.connect(url=emu.url, on_error=lambda c, exc: errors.append(exc), **FAST) as client:
        with pytest.raises(zw.SubscriptionError) as info:
            client.subscribe(["tickers:BTC-USDT", "tickers:NOPE-USDT", "trades:ETH-USDT"], wait=True)
        assert info.value.channels == ["tickers:NOPE-USDT"]
        assert client.subscriptions == ["tickers:BTC-USDT", "trades:ETH-USDT"]
        assert any(isinstance(e, zw.SubscriptionError) and e.channels == ["tickers:NOPE-USDT"] for e in errors)
        with pytest.raises(TimeoutError):
            client.recv(timeout=ms(50))  # neither the acks nor the error reached the queue


def test_okx_restore_after_a_drop_is_acknowledged(restores):
    reconnected = threading.Event()
    with OkxEmulator() as emu:
        with okx.connect(
            ["tickers:BTC-USDT", "trades:ETH-USDT"], url=emu.url, on_reconnect=lambda c, a: reconnected.set(), **FAST
        ):
            emu.drop_connections()
            assert reconnected.wait(5)
            assert emu.subscriptions(-1) == ["tickers:BTC-USDT", "trades:ETH-USDT"]
    assert restores and restores[-1]["count"] == 2 and restores[-1]["missing"] == 0


def test_okx_unsubscribe_is_acknowledged():
    with OkxEmulator() as emu, okx.connect(["tickers:BTC-USDT", "trades:ETH-USDT"], url=emu.url, **FAST) as client:
        client.unsubscribe("tickers:BTC-USDT", wait=True)
        assert emu.all_subscriptions == {"trades:ETH-USDT"}
        assert client.subscriptions == ["trades:ETH-USDT"]


def test_okx_text_ping_keeps_an_idle_connection_open_and_pongs_are_consumed():
    heartbeat = {**okx.HEARTBEAT, "interval": ms(30), "timeout": ms(200)}
    with OkxEmulator(time_scale=ms(150) / 30.0) as emu:
        with okx.connect(url=emu.url, heartbeat_config=heartbeat, **FAST) as client:
            assert wait_until(lambda: client.get_heartbeat_health()["sent"] >= 10, 5)
            assert client.get_heartbeat_health()["last_rtt"] is not None
            with pytest.raises(TimeoutError):
                client.recv(timeout=ms(20))  # no "pong" delivered
        assert emu.idle_closes == 0 and emu.connection_count == 1


def test_okx_without_the_ping_the_idle_cut_comes():
    """The control for the test above."""
    with OkxEmulator(time_scale=ms(100) / 30.0) as emu:
        with okx.connect(url=emu.url, heartbeat_config=None, **FAST):
            assert wait_until(lambda: emu.idle_closes >= 1, 5)


# -- Bybit ---------------------------------------------------------------------------------------


def test_bybit_connect_batches_ten_topics_per_request_each_acknowledged_by_req_id():
    topics = [f"kline.{i}.BTCUSDT" for i in (1, 3, 5, 15, 30, 60, 120, 240, 360, 720)] + [
        "tickers.ETHUSDT",
        "publicTrade.SOLUSDT",
    ]
    with BybitEmulator() as emu, bybit.connect(topics, url=emu.url, **FAST) as client:
        assert [len(r["args"]) for r in emu.requests] == [10, 2]
        assert len({r["req_id"] for r in emu.requests}) == 2
        assert emu.all_subscriptions == set(topics)
        emu.publish("tickers.ETHUSDT", {"lastPrice": "1"})
        message = client.recv_json(timeout=2)  # the acks were consumed
        assert message["topic"] == "tickers.ETHUSDT"


def test_bybit_refused_topic_raises_and_leaves_the_restore_set():
    with BybitEmulator() as emu, bybit.connect(["orderbook.50.BTCUSDT"], url=emu.url, **FAST) as client:
        with pytest.raises(zw.SubscriptionError) as info:
            client.subscribe(["publicTrade.ETHUSDT", "publicTrade.NOPE"], wait=True)
        assert info.value.channels == ["publicTrade.NOPE"]
        assert client.subscriptions == ["orderbook.50.BTCUSDT", "publicTrade.ETHUSDT"]


def test_bybit_restore_after_a_drop_is_acknowledged(restores):
    reconnected = threading.Event()
    with BybitEmulator() as emu:
        with bybit.connect(["tickers.BTCUSDT"], url=emu.url, on_reconnect=lambda c, a: reconnected.set(), **FAST):
            emu.drop_connections()
            assert reconnected.wait(5)
            assert emu.subscriptions(-1) == ["tickers.BTCUSDT"]
    assert restores[-1]["missing"] == 0


def test_bybit_json_ping_is_answered_and_the_pongs_are_consumed():
    heartbeat = {**bybit.HEARTBEAT, "interval": ms(30)}
    with BybitEmulator() as emu, bybit.connect(url=emu.url, heartbeat_config=heartbeat, **FAST) as client:
        assert wait_until(lambda: emu.pings >= 3 and client.get_heartbeat_health()["last_rtt"] is not None, 5)
        assert emu.requests[0] == {"op": "ping"}
        with pytest.raises(TimeoutError):
            client.recv(timeout=ms(20))


@pytest.mark.parametrize(
    ("text", "pong"),
    [
        ('{"success":true,"ret_msg":"pong","conn_id":"a","req_id":"","op":"ping"}', True),
        ('{"req_id":"","op":"pong","args":["1675418560633"],"conn_id":"a"}', True),
        ('{"topic":"tickers.BTCUSDT","data":{"note":"pong"}}', False),
        ("pong", False),
        (b"pong", False),
    ],
)
def test_bybit_pong_predicate(text, pong):
    assert bybit.is_pong(text) is pong


def test_presets_are_fresh_client_options():
    for module in (okx, bybit):
        first, second = module.options(), module.options(name="x")
        assert first["subscription_format"] is not second["subscription_format"]
        assert first["heartbeat_config"]["type"] == "custom"
        zw.Client("ws://127.0.0.1:1/x", **first)
