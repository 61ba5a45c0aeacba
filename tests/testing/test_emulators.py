"""Deribit and Binance emulators against real clients on loopback."""

from __future__ import annotations

import itertools
import json
import threading
import time

import pytest
import websocket  # websocket-client
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.timeunit import ms, wait_until
from zen_websocket.testing import BinanceEmulator, DeribitEmulator
from zen_websocket.testing.deribit import CreditBucket, RpcError, signature_for


@pytest.fixture(autouse=True)
def no_mock_threads_left():
    yield
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and any(t.name.startswith("mock-ws-") for t in threading.enumerate()):
        time.sleep(0.01)
    assert [t.name for t in threading.enumerate() if t.name.startswith("mock-ws-")] == []


_ids = itertools.count(1)


def rpc(ws: ClientConnection, method: str, **params):
    """Send a JSON-RPC request and return the response with the same id (notifications skipped)."""
    request_id = next(_ids)
    ws.send(json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}))
    while True:
        message = json.loads(ws.recv(timeout=1))
        if message.get("id") == request_id:
            return message


def next_notification(ws: ClientConnection, timeout: float = 1.0) -> dict:
    while True:
        message = json.loads(ws.recv(timeout=timeout))
        if "method" in message:
            return message


CREDS = {"cid": "s3cret"}


@pytest.fixture
def deribit():
    with DeribitEmulator(credentials=CREDS, min_heartbeat_interval=ms(10)) as emu:
        yield emu


# ------------------------------------------------------------------ Deribit


def test_deribit_public_test_and_errors(deribit):
    """public/test returns the version; expected_result=exception, unknown methods and bad JSON are errors."""
    with connect(deribit.url) as ws:
        ok = rpc(ws, "public/test")
        assert ok["result"] == {"version": "1.2.26"}
        assert ok["jsonrpc"] == "2.0" and "usIn" in ok
        assert "error" in rpc(ws, "public/test", expected_result="exception")
        assert rpc(ws, "public/nope")["error"]["code"] == -32601
        ws.send("{not json")
        assert json.loads(ws.recv(timeout=1))["error"]["code"] == -32700
    assert [r["method"] for r in deribit.requests] == ["public/test", "public/test", "public/nope"]


def test_deribit_set_heartbeat_validates_interval():
    """An interval below the minimum (10 s on Deribit) is -32602."""
    with DeribitEmulator() as emu, connect(emu.url) as ws:
        assert rpc(ws, "public/set_heartbeat", interval=5)["error"]["code"] == -32602
        assert rpc(ws, "public/set_heartbeat")["error"]["code"] == 13010
        assert rpc(ws, "public/set_heartbeat", interval=10)["result"] == "ok"


def test_deribit_heartbeats_and_answered_test_requests_keep_connection(deribit):
    """heartbeat and test_request notifications arrive; answering with public/test keeps the connection."""
    deribit.test_request_every = 2
    with connect(deribit.url) as ws:
        assert rpc(ws, "public/set_heartbeat", interval=ms(30))["result"] == "ok"
        kinds = []
        for _ in range(4):
            note = next_notification(ws)
            assert note["method"] == "heartbeat"
            kinds.append(note["params"]["type"])
            if note["params"]["type"] == "test_request":
                rpc(ws, "public/test")
        assert kinds == ["heartbeat", "test_request", "heartbeat", "test_request"]
        session = deribit.session(deribit.connections[0])
        assert session.test_requests_answered == 2
        assert deribit.heartbeat_timeouts == 0
        assert rpc(ws, "public/disable_heartbeat")["result"] == "ok"
        with pytest.raises(TimeoutError):
            # Drain anything in flight, then expect silence.
            while True:
                ws.recv(timeout=ms(80))


def test_deribit_unanswered_test_request_closes_connection(deribit):
    """Not answering a test_request in time closes the connection, like Deribit."""
    deribit.test_request_every = 1
    with connect(deribit.url) as ws:
        rpc(ws, "public/set_heartbeat", interval=ms(40))
        assert next_notification(ws)["params"]["type"] == "test_request"
        with pytest.raises(ConnectionClosed):
            while True:
                ws.recv(timeout=1)
        assert ws.close_code == 1000
        assert ws.close_reason == "test_request not answered"
    assert deribit.heartbeat_timeouts == 1


def test_deribit_auth_client_credentials_and_errors(deribit):
    """client_credentials returns tokens; a wrong secret is 13004 invalid_credentials."""
    with connect(deribit.url) as ws:
        bad = rpc(ws, "public/auth", grant_type="client_credentials", client_id="cid", client_secret="wrong")
        assert bad["error"]["code"] == 13004
        assert rpc(ws, "public/auth", grant_type="client_credentials", client_id="cid")["error"]["code"] == 13010
        result = rpc(ws, "public/auth", grant_type="client_credentials", client_id="cid", client_secret="s3cret")[
            "result"
        ]
        assert set(result) >= {"access_token", "expires_in", "refresh_token", "scope", "token_type"}
        assert result["token_type"] == "bearer"
        refreshed = rpc(ws, "public/auth", grant_type="refresh_token", refresh_token=result["refresh_token"])["result"]
        assert refreshed["access_token"] != result["access_token"]
        stale = rpc(ws, "public/auth", grant_type="refresh_token", refresh_token=result["refresh_token"])
        assert stale["error"]["code"] == 13004
    assert deribit.auth_log == [
        (1, "client_credentials", False),
        (1, "client_credentials", False),
        (1, "client_credentials", True),
        (1, "refresh_token", True),
        (1, "refresh_token", False),
    ]


def test_deribit_auth_client_signature(deribit):
    """client_signature checks HMAC-SHA256 of timestamp\\nnonce\\ndata with the client secret."""
    ts = int(time.time() * 1000)
    good = signature_for("s3cret", ts, "abc", "")
    with connect(deribit.url) as ws:
        ok = rpc(
            ws,
            "public/auth",
            grant_type="client_signature",
            client_id="cid",
            timestamp=ts,
            nonce="abc",
            data="",
            signature=good,
        )
        assert "access_token" in ok["result"]
        bad = rpc(
            ws,
            "public/auth",
            grant_type="client_signature",
            client_id="cid",
            timestamp=ts,
            nonce="abd",
            data="",
            signature=good,
        )
        assert bad["error"]["code"] == 13004


def test_deribit_private_subscribe_needs_auth_on_each_connection(deribit):
    """private/subscribe is 13009 until public/auth on this connection; tokens die with the connection."""
    channel = "user.orders.any.any.raw"
    with connect(deribit.url) as ws:
        assert rpc(ws, "private/subscribe", channels=[channel])["error"]["code"] == 13009
        rpc(ws, "public/auth", grant_type="client_credentials", client_id="cid", client_secret="s3cret")
        assert rpc(ws, "private/subscribe", channels=[channel, "book.BTC-PERPETUAL.100ms"])["result"] == [
            channel,
            "book.BTC-PERPETUAL.100ms",
        ]
    with connect(deribit.url) as ws:
        assert rpc(ws, "private/subscribe", channels=[channel])["error"]["code"] == 13009
    assert deribit.subscriptions(0) == {channel, "book.BTC-PERPETUAL.100ms"}
    assert deribit.subscriptions(1) == set()


def test_deribit_token_expiry():
    """After expires_in seconds, and not before, private calls are 13009 again."""
    lifetime = ms(80)
    with DeribitEmulator(credentials=CREDS, expires_in=lifetime) as emu, connect(emu.url) as ws:
        authenticated_at = time.monotonic()  # just before the emulator starts the token's clock
        rpc(ws, "public/auth", grant_type="client_credentials", client_id="cid", client_secret="s3cret")
        assert "result" in rpc(ws, "private/subscribe", channels=["user.trades.any.any.raw"])

        def token_refused() -> bool:
            reply = rpc(ws, "private/subscribe", channels=["user.trades.any.any.raw"])
            return reply.get("error", {}).get("code") == 13009

        assert wait_until(token_refused, interval=0.01)
        assert time.monotonic() - authenticated_at >= lifetime
        assert rpc(ws, "private/subscribe", channels=["user.trades.any.any.raw"])["error"]["code"] == 13009


def test_deribit_public_subscribe_filters_and_publish_reaches_subscribers():
    """public/subscribe leaves private and failing channels out; publish notifies subscribers only."""
    with DeribitEmulator(fail_channels={"ticker.BAD.100ms"}) as emu:
        with connect(emu.url) as a, connect(emu.url) as b:
            result = rpc(
                a,
                "public/subscribe",
                channels=[
                    "deribit_price_index.btc_usd",
                    "trades.BTC-PERPETUAL.raw",
                    "user.orders.any.any.raw",
                    "ticker.BAD.100ms",
                ],
            )["result"]
            assert result == ["deribit_price_index.btc_usd"]
            assert emu.all_subscriptions == {"deribit_price_index.btc_usd"}
            assert emu.publish("deribit_price_index.btc_usd", {"price": 1.5}) == 1
            note = next_notification(a)
            assert note == {
                "jsonrpc": "2.0",
                "method": "subscription",
                "params": {"channel": "deribit_price_index.btc_usd", "data": {"price": 1.5}},
            }
            with pytest.raises(TimeoutError):
                b.recv(timeout=ms(50))
            assert rpc(a, "public/unsubscribe", channels=["deribit_price_index.btc_usd", "x"])["result"] == [
                "deribit_price_index.btc_usd"
            ]
            rpc(a, "public/subscribe", channels=["a.b", "c.d"])
            assert rpc(a, "public/unsubscribe_all")["result"] == "ok"
            assert emu.subscriptions(emu.connections[0]) == set()
            assert rpc(a, "public/subscribe", channels="notalist")["error"]["code"] == -32602


def test_deribit_rate_limit_and_disable():
    """Over the credit bucket, requests get 10028 too_many_requests; rate_limit_enabled=False lifts it."""
    with DeribitEmulator(bucket_capacity=1500, refill_per_second=1) as emu, connect(emu.url) as ws:
        codes = [rpc(ws, "public/test").get("error", {}).get("code") for _ in range(4)]
        assert codes == [None, None, None, 10028]
        assert emu.rate_limited == 1
    with (
        DeribitEmulator(bucket_capacity=1500, refill_per_second=1, rate_limit_enabled=False) as emu,
        connect(emu.url) as ws,
    ):
        assert all("result" in rpc(ws, "public/test") for _ in range(6))


def test_deribit_close_on_rate_limit():
    """close_on_rate_limit terminates the session after the 10028 answer."""
    with (
        DeribitEmulator(bucket_capacity=500, refill_per_second=1, close_on_rate_limit=True) as emu,
        connect(emu.url) as ws,
    ):
        rpc(ws, "public/test")
        assert rpc(ws, "public/test")["error"]["message"] == "too_many_requests"
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=1)


def test_credit_bucket_refills_with_injected_clock():
    """CreditBucket: pure arithmetic on an injected clock."""
    now = [0.0]
    bucket = CreditBucket(capacity=1000, refill_per_second=500, clock=lambda: now[0])
    assert bucket.try_consume(1000)
    assert not bucket.try_consume(1)
    now[0] = 1.0
    assert bucket.credits == 500
    now[0] = 10.0
    assert bucket.credits == 1000


def test_deribit_ticker_numbers_updates(deribit):
    """start_ticker publishes numbered price updates to subscribers."""
    with connect(deribit.url) as ws:
        rpc(ws, "public/subscribe", channels=["deribit_price_index.btc_usd"])
        feed = deribit.start_ticker(interval=ms(5), count=3)
        seqs = [next_notification(ws)["params"]["data"]["seq"] for _ in range(3)]
        assert seqs == [1, 2, 3]
        feed.stop()


def test_deribit_delays_reorder_and_ignored_methods():
    """method_delays let later requests overtake; ignore_methods are never answered."""
    with DeribitEmulator(method_delays={"public/subscribe": ms(80)}, ignore_methods={"public/get_time"}) as emu:
        with connect(emu.url) as ws:
            ws.send(
                json.dumps({"jsonrpc": "2.0", "id": 1, "method": "public/subscribe", "params": {"channels": ["a.b"]}})
            )
            ws.send(json.dumps({"jsonrpc": "2.0", "id": 2, "method": "public/test", "params": {}}))
            ws.send(json.dumps({"jsonrpc": "2.0", "id": 3, "method": "public/get_time", "params": {}}))
            ids = [json.loads(ws.recv(timeout=1))["id"] for _ in range(2)]
            assert ids == [2, 1]
            with pytest.raises(TimeoutError):
                ws.recv(timeout=ms(50))
            emu.assert_message_sent({"id": 3, "method": "public/get_time"})


def test_deribit_register_method():
    """register_method adds methods; private=True needs auth; RpcError becomes a JSON-RPC error."""
    with DeribitEmulator(credentials=CREDS) as emu:

        def positions(conn, params):
            if params.get("currency") != "BTC":
                raise RpcError(-32602, "Invalid params")
            return [{"size": 1}]

        emu.register_method("private/get_positions", positions, private=True)
        with connect(emu.url) as ws:
            assert rpc(ws, "private/get_positions", currency="BTC")["error"]["code"] == 13009
            rpc(ws, "public/auth", grant_type="client_credentials", client_id="cid", client_secret="s3cret")
            assert rpc(ws, "private/get_positions", currency="BTC")["result"] == [{"size": 1}]
            assert rpc(ws, "private/get_positions", currency="ETH")["error"]["code"] == -32602


def test_deribit_over_tls():
    """The emulators take MockWebSocketServer options such as tls=True."""
    with DeribitEmulator(tls=True) as emu, connect(emu.url, ssl=emu.client_ssl_context()) as ws:
        assert rpc(ws, "public/test")["result"]["version"]


# ------------------------------------------------------------------ Binance


@pytest.fixture
def binance():
    with BinanceEmulator(ping_interval=None) as emu:
        yield emu


def control(ws: ClientConnection, method: str, params=None, request_id: int = 1) -> dict:
    message = {"method": method, "id": request_id}
    if params is not None:
        message["params"] = params
    ws.send(json.dumps(message))
    return json.loads(ws.recv(timeout=1))


def test_binance_raw_and_combined_paths(binance):
    """/ws/<stream> gets raw events; /stream?streams=a/b gets them wrapped; other paths are 404."""
    with (
        connect(binance.url + "/ws/btcusdt@trade") as raw,
        connect(binance.url + "/stream?streams=btcusdt@trade/ethusdt@trade") as combined,
    ):
        assert binance.wait_for_connections(2)
        assert binance.publish("btcusdt@trade", {"t": 1}) == 2
        assert json.loads(raw.recv(timeout=1)) == {"t": 1}
        assert json.loads(combined.recv(timeout=1)) == {"stream": "btcusdt@trade", "data": {"t": 1}}
        assert binance.publish("ethusdt@trade", {"t": 2}) == 1
        assert json.loads(combined.recv(timeout=1)) == {"stream": "ethusdt@trade", "data": {"t": 2}}
        assert control(combined, "LIST_SUBSCRIPTIONS")["result"] == ["btcusdt@trade", "ethusdt@trade"]
    with pytest.raises(InvalidStatus) as info, connect(binance.url + "/api/v3"):
        pass
    assert info.value.response.status_code == 404


def test_binance_live_subscribe_unsubscribe_list(binance):
    """SUBSCRIBE/UNSUBSCRIBE answer {"result": null, "id": N}; LIST_SUBSCRIPTIONS lists streams."""
    with connect(binance.url + "/ws") as ws:
        assert control(ws, "SUBSCRIBE", ["btcusdt@trade", "btcusdt@depth@100ms"], 7) == {"result": None, "id": 7}
        assert binance.all_subscriptions == {"btcusdt@trade", "btcusdt@depth@100ms"}
        assert control(ws, "UNSUBSCRIBE", ["btcusdt@trade"], 8) == {"result": None, "id": 8}
        assert control(ws, "LIST_SUBSCRIPTIONS", request_id=9) == {"result": ["btcusdt@depth@100ms"], "id": 9}
        assert control(ws, "GET_PROPERTY", ["combined"], 10) == {"result": False, "id": 10}
        assert control(ws, "SET_PROPERTY", ["combined", True], 11) == {"result": None, "id": 11}
        binance.publish("btcusdt@depth@100ms", {"u": 1})
        assert json.loads(ws.recv(timeout=1)) == {"stream": "btcusdt@depth@100ms", "data": {"u": 1}}
    assert [m["id"] for m in binance.control_messages] == [7, 8, 9, 10, 11]


def test_binance_control_errors():
    """Bad JSON is code 3, bad params code 1/2, unknown properties code 0, too many streams code 2."""
    with (
        BinanceEmulator(ping_interval=None, max_streams=2, max_incoming_per_second=None, error_shape="docs") as emu,
        connect(emu.url + "/ws") as ws,
    ):
        ws.send("{oops")
        assert json.loads(ws.recv(timeout=1))["code"] == 3
        assert control(ws, "SUBSCRIBE", "btcusdt@trade")["code"] == 2
        assert control(ws, "SUBSCRIBE", [1])["code"] == 1
        assert control(ws, "SUBSCRIBE", ["BTCUSDT@trade"])["code"] == 2
        assert control(ws, "SUBSCRIBE", ["a@trade", "b@trade", "c@trade"], 5) == {
            "code": 2,
            "msg": "Invalid request: too many streams (max 2)",
            "id": 5,
        }
        assert control(ws, "SET_PROPERTY", ["colour", 1])["code"] == 0
        assert control(ws, "SET_PROPERTY", ["combined", "yes"])["code"] == 1
        assert control(ws, "FLY")["code"] == 2


def test_binance_rate_limit_closes_with_1008(binance):
    """More than 5 incoming messages within a second closes the connection (1008) and is recorded."""
    with connect(binance.url + "/ws") as ws:
        for i in range(6):
            ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": i}))
        with pytest.raises(ConnectionClosed):
            while True:
                ws.recv(timeout=1)
        assert ws.close_code == 1008
    assert len(binance.violations) == 1
    assert binance.violations[0].count == 6


def test_binance_rate_limit_counts_pings_and_pongs(binance):
    """Client pings and unsolicited pongs count towards the incoming limit."""
    with connect(binance.url + "/ws") as ws:
        for _ in range(3):
            ws.pong(b"p")
        for i in range(3):
            ws.ping(f"{i}".encode())
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=1)
        assert ws.close_code == 1008
    assert binance.violations and binance.violations[0].count == 6


def test_binance_under_the_limit_is_fine(binance):
    """Five messages per second are allowed."""
    with connect(binance.url + "/ws") as ws:
        for i in range(5):
            assert control(ws, "LIST_SUBSCRIPTIONS", request_id=i)["id"] == i
    assert binance.violations == []


def test_binance_server_pings_answered_keep_connection():
    """The server pings every ping_interval; a client that answers (websockets does) stays connected."""
    # Pongs count towards the incoming limit, so lift it for fast pings.
    with (
        BinanceEmulator(ping_interval=ms(20), pong_timeout=ms(60), max_incoming_per_second=None) as emu,
        connect(emu.url + "/ws") as ws,
    ):
        assert emu.wait_for(lambda: emu.pings_sent >= 3 and len(emu.pongs_received) >= 3, timeout=1)
        # recv() keeps the client reading, hence answering pings.
        with pytest.raises(TimeoutError):
            ws.recv(timeout=ms(100))
        assert emu.pong_timeouts == 0
        assert emu.connections


def test_binance_missing_pong_disconnects():
    """A client that never reads (so never pongs) is disconnected after pong_timeout."""
    with BinanceEmulator(ping_interval=ms(20), pong_timeout=ms(50), close_timeout=ms(100)) as emu:
        raw = websocket.create_connection(emu.url + "/ws", timeout=1)
        try:
            assert emu.wait_for(lambda: emu.pong_timeouts == 1, timeout=1)
            assert emu.wait_for(lambda: not emu.connections, timeout=1)
            # The client never answers the close frame: the server gives up on it.
            assert emu.wait_for(lambda: emu.all_connections[0].close_code is not None, timeout=1)
        finally:
            raw.close(timeout=0)


def test_binance_server_shutdown_event(binance):
    """server_shutdown sends {"e": "serverShutdown", "E": ms}."""
    with connect(binance.url + "/ws") as ws:
        assert binance.wait_for_connections(1)
        assert binance.server_shutdown() == 1
        event = json.loads(ws.recv(timeout=1))
        assert event["e"] == "serverShutdown"
        assert abs(event["E"] - time.time() * 1000) < 5000


def test_binance_start_trades_numbered(binance):
    """start_trades publishes trade events with t = 1, 2, 3..."""
    with connect(binance.url + "/ws/btcusdt@trade") as ws:
        assert binance.wait_for_connections(1)
        feed = binance.start_trades(interval=ms(5), count=4)
        trades = [json.loads(ws.recv(timeout=1)) for _ in range(4)]
        assert [t["t"] for t in trades] == [1, 2, 3, 4]
        assert trades[0]["e"] == "trade" and trades[0]["s"] == "BTCUSDT"
        feed.stop()


def test_binance_max_connection_age():
    """max_connection_age closes connections after that long."""
    with BinanceEmulator(ping_interval=None, max_connection_age=ms(50)) as emu, connect(emu.url + "/ws") as ws:
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=1)
        assert ws.close_code == 1000
