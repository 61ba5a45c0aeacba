"""OkxEmulator and BybitEmulator enforce what the adapters rely on: one test per rule, plain WebSocket clients."""

from __future__ import annotations

import json
import threading
import time

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.timeunit import ms
from zen_websocket.testing import BybitEmulator, OkxEmulator


@pytest.fixture(autouse=True)
def no_mock_threads_left():
    yield
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and any(t.name.startswith("mock-ws-") for t in threading.enumerate()):
        time.sleep(0.01)
    assert [t.name for t in threading.enumerate() if t.name.startswith("mock-ws-")] == []


def send(ws: ClientConnection, message: dict) -> None:
    ws.send(json.dumps(message))


def recv(ws: ClientConnection) -> dict:
    return json.loads(ws.recv(timeout=1))


# -- OKX -------------------------------------------------------------------------------------


@pytest.fixture
def okx():
    with OkxEmulator() as emu:
        yield emu


def test_okx_answers_the_text_ping_with_pong(okx):
    with connect(okx.url + "/ws/v5/public") as ws:
        ws.send("ping")
        assert ws.recv(timeout=1) == "pong"


def test_okx_acknowledges_each_channel_in_order_without_a_request_id(okx):
    with connect(okx.url + "/ws/v5/public") as ws:
        args = [{"channel": "tickers", "instId": "BTC-USDT"}, {"channel": "books5", "instId": "ETH-USDT"}]
        send(ws, {"id": "r1", "op": "subscribe", "args": args})
        acks = [recv(ws), recv(ws)]
        assert [a["event"] for a in acks] == ["subscribe", "subscribe"]
        assert [a["arg"] for a in acks] == args
        assert all("id" not in a and a["connId"] for a in acks)
        assert okx.all_subscriptions == {"tickers:BTC-USDT", "books5:ETH-USDT"}
        send(ws, {"op": "unsubscribe", "args": args[:1]})
        assert recv(ws) == {"event": "unsubscribe", "arg": args[0], "connId": acks[0]["connId"]}
        assert okx.all_subscriptions == {"books5:ETH-USDT"}


def test_okx_refuses_an_unknown_instrument_with_60018_naming_it(okx):
    with connect(okx.url + "/ws/v5/public") as ws:
        args = [{"channel": "tickers", "instId": "NOPE-USDT"}, {"channel": "tickers", "instId": "BTC-USDT"}]
        send(ws, {"op": "subscribe", "args": args})
        error, ok = recv(ws), recv(ws)
        assert error["event"] == "error" and error["code"] == "60018" and "NOPE-USDT" in error["msg"]
        assert "arg" not in error
        assert ok["event"] == "subscribe"


def test_okx_refuses_malformed_requests_with_60012(okx):
    with connect(okx.url + "/ws/v5/public") as ws:
        ws.send("{nope")
        assert recv(ws)["code"] == "60012"
        send(ws, {"op": "subscribe", "args": "tickers"})
        assert recv(ws)["code"] == "60012"


def test_okx_echoes_the_id_when_asked():
    with OkxEmulator(echo_id=True) as emu, connect(emu.url + "/ws/v5/public") as ws:
        send(ws, {"id": "r9", "op": "subscribe", "args": [{"channel": "tickers", "instId": "BTC-USDT"}]})
        assert recv(ws)["id"] == "r9"


def test_okx_publishes_to_subscribers_only(okx):
    with connect(okx.url + "/ws/v5/public") as ws, connect(okx.url + "/ws/v5/public") as other:
        send(ws, {"op": "subscribe", "args": [{"channel": "tickers", "instId": "BTC-USDT"}]})
        recv(ws)
        assert okx.publish("tickers:BTC-USDT", {"last": "1"}) == 1
        assert recv(ws) == {"arg": {"channel": "tickers", "instId": "BTC-USDT"}, "data": [{"last": "1"}]}
        with pytest.raises(TimeoutError):
            other.recv(timeout=ms(30))


def test_okx_closes_a_connection_idle_for_30_seconds_scaled():
    with OkxEmulator(time_scale=ms(60) / 30.0) as emu, connect(emu.url + "/ws/v5/public") as ws:
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=2)
        assert ws.close_code == 4004
    assert emu.idle_closes == 1


def test_okx_pings_keep_a_connection_open():
    with OkxEmulator(time_scale=ms(100) / 30.0) as emu, connect(emu.url + "/ws/v5/public") as ws:
        for _ in range(6):
            ws.send("ping")
            assert ws.recv(timeout=1) == "pong"
            time.sleep(ms(40))
    assert emu.idle_closes == 0


def test_okx_other_paths_are_404(okx):
    with pytest.raises(InvalidStatus) as info, connect(okx.url + "/ws/v5/private"):
        pass
    assert info.value.response.status_code == 404


# -- Bybit -------------------------------------------------------------------------------------


@pytest.fixture
def bybit():
    with BybitEmulator() as emu:
        yield emu


def test_bybit_answers_the_json_ping(bybit):
    with connect(bybit.url + "/v5/public/spot") as ws:
        send(ws, {"op": "ping", "req_id": "p1"})
        pong = recv(ws)
        assert pong["success"] is True and pong["ret_msg"] == "pong" and pong["op"] == "ping" and pong["req_id"] == "p1"
    assert bybit.pings == 1


def test_bybit_acknowledges_a_subscribe_once_by_req_id(bybit):
    with connect(bybit.url + "/v5/public/linear") as ws:
        send(ws, {"op": "subscribe", "req_id": "s1", "args": ["orderbook.50.BTCUSDT", "publicTrade.ETHUSDT"]})
        ack = recv(ws)
        assert ack["success"] is True and ack["req_id"] == "s1" and ack["op"] == "subscribe" and ack["conn_id"]
        with pytest.raises(TimeoutError):
            ws.recv(timeout=ms(30))
    assert bybit.requests[0]["req_id"] == "s1"


def test_bybit_refuses_unknown_topics_by_name_and_keeps_the_others(bybit):
    with connect(bybit.url + "/v5/public/spot") as ws:
        send(ws, {"op": "subscribe", "req_id": "s2", "args": ["tickers.BTCUSDT", "tickers.NOPE", "bogus"]})
        ack = recv(ws)
        assert ack["success"] is False and "tickers.NOPE" in ack["ret_msg"] and "bogus" in ack["ret_msg"]
        assert bybit.all_subscriptions == {"tickers.BTCUSDT"}


def test_bybit_refuses_more_than_10_args(bybit):
    with connect(bybit.url + "/v5/public/spot") as ws:
        send(ws, {"op": "subscribe", "req_id": "s3", "args": [f"kline.{i}.BTCUSDT" for i in (1, 3, 5, 15, 30, 60)] * 2})
        ack = recv(ws)
        assert ack["success"] is False and "args size" in ack["ret_msg"]
        assert bybit.all_subscriptions == set()


def test_bybit_publishes_topic_messages_to_subscribers(bybit):
    with connect(bybit.url + "/v5/public/spot") as ws:
        send(ws, {"op": "subscribe", "req_id": "s4", "args": ["publicTrade.BTCUSDT"]})
        recv(ws)
        assert bybit.publish("publicTrade.BTCUSDT", [{"p": "1"}], kind="delta") == 1
        message = recv(ws)
        assert (
            message["topic"] == "publicTrade.BTCUSDT" and message["type"] == "delta" and message["data"] == [{"p": "1"}]
        )
        send(ws, {"op": "unsubscribe", "req_id": "u1", "args": ["publicTrade.BTCUSDT"]})
        assert recv(ws)["success"] is True
        assert bybit.publish("publicTrade.BTCUSDT", []) == 0


def test_bybit_other_paths_are_404(bybit):
    with pytest.raises(InvalidStatus) as info, connect(bybit.url + "/v5/private"):
        pass
    assert info.value.response.status_code == 404
