"""BinanceEmulator enforces Binance's rules: one test per rule, against plain WebSocket/HTTP clients."""

from __future__ import annotations

import json
import threading
import time

import pytest
import requests
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.timeunit import ms
from zen_websocket.testing import BinanceEmulator
from zen_websocket.testing.binance import MAX_CONNECTION_AGE, is_valid_stream

KEY = "test-api-key"


@pytest.fixture(autouse=True)
def no_mock_threads_left():
    yield
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and any(t.name.startswith("mock-ws-") for t in threading.enumerate()):
        time.sleep(0.01)
    assert [t.name for t in threading.enumerate() if t.name.startswith("mock-ws-")] == []


@pytest.fixture
def binance():
    with BinanceEmulator(ping_interval=None) as emu:
        yield emu


def control(ws: ClientConnection, method: str, params=None, request_id=1) -> dict:
    message = {"method": method, "id": request_id}
    if params is not None:
        message["params"] = params
    ws.send(json.dumps(message))
    return json.loads(ws.recv(timeout=1))


# -- stream names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "btcusdt@aggTrade",
        "btcusdt@trade",
        "btcusdt@bookTicker",
        "btcusdt@depth",
        "btcusdt@depth@100ms",
        "btcusdt@depth20@1000ms",
        "btcusdt@kline_1m",
        "btcusdt@kline_1M",
        "btcusdt@miniTicker",
        "btcusdt@ticker_1h",
        "btcusdt@avgPrice",
        "!ticker@arr",
        "!miniTicker@arr",
        "!ticker_4h@arr",
    ],
)
def test_documented_stream_names_are_valid(name):
    assert is_valid_stream(name)


@pytest.mark.parametrize(
    "name", ["BTCUSDT@trade", "btcusdt@aggtrade", "btcusdt@booktrade", "btcusdt", "btcusdt@kline_2m", "@trade", 5]
)
def test_other_stream_names_are_not(name):
    assert not is_valid_stream(name)


def test_the_docs_subscribe_example_with_camel_case_streams_is_accepted(binance):
    """{"method": "SUBSCRIBE", "params": ["btcusdt@aggTrade", "btcusdt@depth"], "id": 1} (Binance docs)."""
    with connect(binance.url + "/ws") as ws:
        assert control(ws, "SUBSCRIBE", ["btcusdt@aggTrade", "btcusdt@depth"], 1) == {"result": None, "id": 1}
        assert control(ws, "SUBSCRIBE", ["ethusdt@bookTicker"], 2) == {"result": None, "id": 2}
    assert binance.control_messages[0] == {
        "method": "SUBSCRIBE",
        "params": ["btcusdt@aggTrade", "btcusdt@depth"],
        "id": 1,
    }


def test_combined_url_with_camel_case_streams_connects_and_a_bad_one_is_refused(binance):
    with connect(binance.url + "/stream?streams=btcusdt@aggTrade/ethusdt@bookTicker"):
        assert binance.wait_for(lambda: binance.all_subscriptions == {"btcusdt@aggTrade", "ethusdt@bookTicker"})
    with pytest.raises(InvalidStatus) as info, connect(binance.url + "/stream?streams=BTCUSDT@trade"):
        pass
    assert info.value.response.status_code == 400


# -- errors ----------------------------------------------------------------------------------


def test_an_invalid_stream_gets_the_wire_error_shape_then_a_close(binance):
    with connect(binance.url + "/ws") as ws:
        reply = control(ws, "SUBSCRIBE", ["BTCUSDT@trade"], 7)
        assert set(reply) == {"error", "id"} and reply["id"] == 7
        assert reply["error"]["code"] == 2 and "invalid stream" in reply["error"]["msg"]
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=1)
        assert ws.close_code == 1008


def test_the_documented_error_shape_keeps_the_connection_open():
    with BinanceEmulator(ping_interval=None, error_shape="docs") as emu, connect(emu.url + "/ws") as ws:
        assert control(ws, "SUBSCRIBE", ["BTCUSDT@trade"], 3)["code"] == 2
        assert control(ws, "LIST_SUBSCRIPTIONS", request_id=4) == {"result": [], "id": 4}


def test_ids_are_integers_or_strings_of_at_most_36_characters():
    with BinanceEmulator(ping_interval=None, error_shape="docs") as emu, connect(emu.url + "/ws") as ws:
        assert control(ws, "LIST_SUBSCRIPTIONS", request_id="x" * 36)["id"] == "x" * 36
        refused = control(ws, "LIST_SUBSCRIPTIONS", request_id="x" * 37)
        assert refused["code"] == 2 and refused["id"] is None
        assert control(ws, "LIST_SUBSCRIPTIONS", request_id=1.5)["code"] == 2


def test_unknown_error_shape_or_time_scale_is_refused():
    with pytest.raises(ValueError):
        BinanceEmulator(error_shape="loud")
    with pytest.raises(ValueError):
        BinanceEmulator(time_scale=0)


# -- limits ----------------------------------------------------------------------------------


def test_1024_streams_per_connection_and_not_one_more(binance):
    with connect(binance.url + "/ws") as ws:
        streams = [f"s{i}usdt@trade" for i in range(1024)]
        assert control(ws, "SUBSCRIBE", streams, 1) == {"result": None, "id": 1}
        reply = control(ws, "SUBSCRIBE", ["one@trade"], 2)
        assert reply["error"]["code"] == 2 and "too many streams" in reply["error"]["msg"]


def test_the_24_hour_cut_is_on_by_default_and_runs_scaled():
    assert BinanceEmulator().max_connection_age == MAX_CONNECTION_AGE == 24 * 3600
    scale = ms(80) / MAX_CONNECTION_AGE  # 24 h -> 80 ms
    with BinanceEmulator(ping_interval=None, time_scale=scale) as emu, connect(emu.url + "/ws") as ws:
        started = time.monotonic()
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=2)
        assert ws.close_code == 1000
        assert time.monotonic() - started >= ms(60)


def test_time_scale_leaves_pings_and_explicit_durations_as_given():
    emu = BinanceEmulator(time_scale=1e-5, max_connection_age=7.0)
    assert emu.ping_interval == 20.0 and emu.pong_timeout == 60.0
    assert emu.max_connection_age == 7.0
    assert emu.listen_key_validity == pytest.approx(3600 * 1e-5) and emu.api_window == pytest.approx(60 * 1e-5)
    assert BinanceEmulator(max_connection_age=None).max_connection_age is None


# -- serverShutdown ----------------------------------------------------------------------------


def test_server_shutdown_is_wrapped_on_combined_streams_and_can_close(binance):
    with connect(binance.url + "/stream?streams=btcusdt@trade") as combined, connect(binance.url + "/ws") as raw:
        assert binance.wait_for_connections(2)
        assert binance.server_shutdown(close_after=ms(50)) == 2
        wrapped = json.loads(combined.recv(timeout=1))
        assert wrapped["stream"] == "!serverShutdown" and wrapped["data"]["e"] == "serverShutdown"
        assert json.loads(raw.recv(timeout=1))["e"] == "serverShutdown"
        for ws in (combined, raw):
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=2)
            assert ws.close_code == 1001


def test_trades_are_numbered_across_the_feed_for_loss_checks(binance):
    with connect(binance.url + "/ws/btcusdt@aggTrade") as ws:
        assert binance.wait_for_connections(1)
        feed = binance.start_trades("btcusdt@aggTrade", interval=ms(2), count=3)
        events = [json.loads(ws.recv(timeout=1)) for _ in range(3)]
        feed.stop()
    assert [e["a"] for e in events] == [1, 2, 3] and events[0]["e"] == "aggTrade"


# -- futures listen keys -----------------------------------------------------------------------


@pytest.fixture
def futures():
    with BinanceEmulator(ping_interval=None, api_keys=[KEY]) as emu:
        yield emu


def rest(emu: BinanceEmulator, method: str, api_key: str | None = KEY) -> requests.Response:
    headers = {"X-MBX-APIKEY": api_key} if api_key else {}
    with requests.Session() as http:
        http.trust_env = False  # loopback, whatever proxy the environment names
        return http.request(method, emu.rest_url + "/fapi/v1/listenKey", headers=headers, timeout=2)


def test_rest_server_runs_only_with_api_keys(binance):
    with pytest.raises(RuntimeError):
        _ = binance.rest_url


def test_post_creates_a_key_and_returns_the_active_one_again(futures):
    first = rest(futures, "POST")
    assert first.status_code == 200
    key = first.json()["listenKey"]
    assert len(key) == 64 and key.isalnum()
    assert rest(futures, "POST").json()["listenKey"] == key
    assert futures.listen_keys == [key]
    assert [(c.method, c.status, c.listen_key) for c in futures.rest_calls] == [("POST", 200, key)] * 2


def test_unknown_api_keys_are_refused(futures):
    response = rest(futures, "POST", api_key="someone-else")
    assert response.status_code == 401 and response.json()["code"] == -2015
    assert rest(futures, "POST", api_key=None).status_code == 401
    assert futures.listen_keys == []


def test_put_and_delete_need_a_live_key(futures):
    assert rest(futures, "PUT").json() == {"code": -1125, "msg": "This listenKey does not exist."}
    key = rest(futures, "POST").json()["listenKey"]
    assert rest(futures, "PUT").status_code == 200
    assert rest(futures, "DELETE").status_code == 200
    assert futures.listen_keys == [] and key not in futures.listen_keys
    assert rest(futures, "DELETE").status_code == 400


def test_user_data_streams_need_a_live_key(futures):
    key = rest(futures, "POST").json()["listenKey"]
    with connect(futures.url + f"/ws/{key}") as ws:
        assert futures.wait_for_connections(1)
        assert futures.publish_user_event({"e": "ACCOUNT_UPDATE"}) == 1
        assert json.loads(ws.recv(timeout=1)) == {"e": "ACCOUNT_UPDATE"}
        rest(futures, "DELETE")
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=1)
    with pytest.raises(InvalidStatus) as info, connect(futures.url + f"/ws/{key}"):
        pass
    assert info.value.response.status_code == 400


def test_a_key_lapses_after_its_validity_with_listen_key_expired():
    with BinanceEmulator(ping_interval=None, api_keys=[KEY], time_scale=ms(100) / 3600) as emu:
        key = rest(emu, "POST").json()["listenKey"]
        with connect(emu.url + f"/ws/{key}") as ws:
            event = json.loads(ws.recv(timeout=2))
        assert event["e"] == "listenKeyExpired" and event["listenKey"] == key
        assert emu.listen_keys == []
        assert rest(emu, "PUT").status_code == 400


def test_keepalive_extends_the_validity():
    with BinanceEmulator(ping_interval=None, api_keys=[KEY], time_scale=ms(150) / 3600) as emu:
        key = rest(emu, "POST").json()["listenKey"]
        for _ in range(4):
            time.sleep(ms(60))
            assert rest(emu, "PUT").status_code == 200
        assert emu.listen_keys == [key]


def test_expire_listen_key_now_with_or_without_the_event(futures):
    key = rest(futures, "POST").json()["listenKey"]
    with connect(futures.url + f"/ws/{key}") as ws:
        assert futures.wait_for_connections(1)
        assert futures.expire_listen_key(notify=False) == [key]
        with pytest.raises(TimeoutError):
            ws.recv(timeout=ms(50))
    assert futures.expire_listen_key(key) == []


# -- WebSocket API -----------------------------------------------------------------------------


def api(ws: ClientConnection, method: str, request_id, params=None) -> dict:
    message = {"id": request_id, "method": method}
    if params is not None:
        message["params"] = params
    ws.send(json.dumps(message))
    return json.loads(ws.recv(timeout=1))


def test_api_answers_with_status_result_and_rate_limits(binance):
    with connect(binance.url + "/ws-api/v3") as ws:
        reply = api(ws, "ping", "a")
        assert reply["id"] == "a" and reply["status"] == 200 and reply["result"] == {}
        assert reply["rateLimits"][0]["rateLimitType"] == "REQUEST_WEIGHT" and reply["rateLimits"][0]["count"] == 1
        assert api(ws, "nope", "b")["status"] == 400


def test_api_weight_over_the_window_gets_429_with_retry_after_then_418():
    with (
        BinanceEmulator(ping_interval=None, api_weight_limit=40, ban_after=1) as emu,
        connect(emu.url + "/ws-api/v3") as ws,
    ):
        assert api(ws, "exchangeInfo", 1)["status"] == 200
        assert api(ws, "exchangeInfo", 2)["status"] == 200  # 40: the limit
        limited = api(ws, "ping", 3)
        assert limited["status"] == 429
        data = limited["error"]["data"]
        assert 0 < data["retryAfter"] - data["serverTime"] <= 60_000  # the next whole minute
        assert data["retryAfter"] % 60_000 == 0
        banned = api(ws, "ping", 4)
        assert banned["status"] == 418 and banned["error"]["code"] == -1003
        assert api(ws, "ping", 5)["status"] == 418
    assert [r["id"] for r in emu.api_requests] == [1, 2, 3, 4, 5]


def test_api_connections_are_not_held_to_the_stream_message_limit(binance):
    with connect(binance.url + "/ws-api/v3") as ws:
        for i in range(8):
            assert api(ws, "ping", i)["status"] == 200
    assert binance.violations == []
