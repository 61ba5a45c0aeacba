"""DeribitEmulator enforces Deribit's rules: each rule, against a plain WebSocket client on loopback."""

from __future__ import annotations

import itertools
import json
import threading
import time

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.timeunit import ms, wait_until
from zen_websocket.testing import DeribitEmulator
from zen_websocket.testing.deribit import INSTRUMENTS, MAX_FRAME_BYTES, channel_exists, signature_for

CREDS = {"cid": "s3cret"}
_ids = itertools.count(1)


@pytest.fixture(autouse=True)
def no_mock_threads_left():
    yield
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and any(t.name.startswith("mock-ws-") for t in threading.enumerate()):
        time.sleep(0.01)
    assert [t.name for t in threading.enumerate() if t.name.startswith("mock-ws-")] == []


def rpc(ws: ClientConnection, method: str, **params) -> dict:
    """Send a JSON-RPC request; return the response with its id (notifications are skipped)."""
    request_id = next(_ids)
    ws.send(json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}))
    while True:
        message = json.loads(ws.recv(timeout=2))
        if message.get("id") == request_id:
            return message


def auth(ws: ClientConnection, secret: str = "s3cret") -> dict:
    return rpc(ws, "public/auth", grant_type="client_credentials", client_id="cid", client_secret=secret)


def drain_until_closed(ws: ClientConnection, on_test_request=None) -> None:
    """Read (answering test_requests with ``on_test_request``) until the server closes."""
    with pytest.raises(ConnectionClosed):
        while True:
            message = json.loads(ws.recv(timeout=3))
            if message.get("params", {}).get("type") == "test_request" and on_test_request:
                on_test_request(message)


# ------------------------------------------------------------------ heartbeat deadline


def test_answered_test_requests_never_close_the_connection_even_on_every_tick():
    """test_request_every=1: a client that answers each one with public/test stays connected (it was closed)."""
    with DeribitEmulator(min_heartbeat_interval=ms(10), test_request_every=1) as emu, connect(emu.url) as ws:
        assert rpc(ws, "public/set_heartbeat", interval=ms(30))["result"] == "ok"
        answered = 0
        while answered < 8:
            message = json.loads(ws.recv(timeout=1))
            if message.get("params", {}).get("type") == "test_request":
                ws.send(json.dumps({"jsonrpc": "2.0", "id": next(_ids), "method": "public/test", "params": {}}))
                answered += 1
        # Eight deadlines passed, each due at the same moment as the next test_request.
        session = emu.session(emu.connections[0])
        assert wait_until(lambda: session.test_requests_answered == 8)
        assert emu.heartbeat_timeouts == 0 and emu.connection_count == 1
        assert rpc(ws, "public/test")["result"]["version"]  # still open


def test_a_test_request_left_unanswered_closes_by_its_own_deadline():
    """Answering the first test_request does not excuse the second: its deadline closes the connection."""
    with DeribitEmulator(min_heartbeat_interval=ms(10), test_request_every=1) as emu, connect(emu.url) as ws:
        rpc(ws, "public/set_heartbeat", interval=ms(40))
        seen = []

        def answer_first(message):
            seen.append(message)
            if len(seen) == 1:
                ws.send(json.dumps({"jsonrpc": "2.0", "id": next(_ids), "method": "public/test", "params": {}}))

        drain_until_closed(ws, answer_first)
        assert ws.close_code == 1000 and ws.close_reason == "test_request not answered"
        assert len(seen) >= 2
    assert emu.heartbeat_timeouts == 1


def test_disable_heartbeat_cancels_the_pending_deadline():
    """public/disable_heartbeat: a test_request sent before it is no longer owed."""
    with DeribitEmulator(min_heartbeat_interval=ms(10), test_request_every=1) as emu, connect(emu.url) as ws:
        rpc(ws, "public/set_heartbeat", interval=ms(40))
        message = json.loads(ws.recv(timeout=1))
        assert message["params"]["type"] == "test_request"
        assert rpc(ws, "public/disable_heartbeat")["result"] == "ok"
        with pytest.raises(TimeoutError):
            ws.recv(timeout=ms(150))  # neither heartbeats nor a close
    assert emu.heartbeat_timeouts == 0


def test_set_heartbeat_takes_an_integer_of_at_least_ten_seconds():
    """Deribit's rule (PROTOCOLS.md): 30 is accepted, 30.0 and 9 are -32602."""
    with DeribitEmulator() as emu, connect(emu.url) as ws:
        assert rpc(ws, "public/set_heartbeat", interval=30)["result"] == "ok"
        assert rpc(ws, "public/set_heartbeat", interval=30.0)["error"]["code"] == -32602
        assert rpc(ws, "public/set_heartbeat", interval=9)["error"]["code"] == -32602
        assert rpc(ws, "public/set_heartbeat", interval=True)["error"]["code"] == -32602


def test_test_speed_accepts_fractional_intervals_without_touching_constants():
    """min_heartbeat_interval under a second (test speed) accepts fractions; the module minimum is untouched."""
    from zen_websocket.testing import deribit as module

    with DeribitEmulator(min_heartbeat_interval=ms(10)) as emu, connect(emu.url) as ws:
        assert rpc(ws, "public/set_heartbeat", interval=ms(20))["result"] == "ok"
        assert rpc(ws, "public/set_heartbeat", interval=ms(5))["error"]["code"] == -32602
    assert module.MIN_HEARTBEAT_INTERVAL == 10.0


# ------------------------------------------------------------------ credits


def test_over_the_credits_a_request_gets_10028_and_the_session_ends():
    """Deribit answers 10028 too_many_requests and then terminates the session (closed by default)."""
    with DeribitEmulator(bucket_capacity=1500, refill_per_second=1) as emu, connect(emu.url) as ws:
        assert ["result" in rpc(ws, "public/test") for _ in range(3)] == [True, True, True]
        refused = rpc(ws, "public/test")
        assert refused["error"] == {"code": 10028, "message": "too_many_requests"}
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=1)
        assert ws.close_code == 1000 and ws.close_reason == "too_many_requests"
    assert emu.rate_limited == 1


def test_credits_refill_and_each_connection_has_its_own_bucket():
    """Refused for now (close_on_rate_limit=False), granted once the bucket refills; a new connection starts full."""
    with DeribitEmulator(bucket_capacity=1000, refill_per_second=500 / ms(200), close_on_rate_limit=False) as emu:
        with connect(emu.url) as ws:
            assert "result" in rpc(ws, "public/test") and "result" in rpc(ws, "public/test")
            assert rpc(ws, "public/test")["error"]["code"] == 10028
            assert wait_until(lambda: "result" in rpc(ws, "public/test"), interval=ms(20))
        with connect(emu.url) as ws:
            assert "result" in rpc(ws, "public/test") and "result" in rpc(ws, "public/test")
    assert emu.rate_limited >= 1


# ------------------------------------------------------------------ frame limit


def test_a_frame_over_32_kB_is_refused_with_minus_32600_and_not_executed():
    """A 40 kB request is answered -32600 (with its id) and not run; one just under the limit is run."""
    with DeribitEmulator(fail_channels=()) as emu, connect(emu.url, max_size=None) as ws:
        channels = [f"ticker.BTC-PERPETUAL.100ms{i}" for i in range(2000)]
        big = json.dumps({"jsonrpc": "2.0", "id": 77, "method": "public/subscribe", "params": {"channels": channels}})
        assert len(big) > 40_000
        ws.send(big)
        answer = json.loads(ws.recv(timeout=1))
        assert answer["id"] == 77
        assert answer["error"]["code"] == -32600
        assert answer["error"]["message"] == "request entity too large"
        padding = "x" * (MAX_FRAME_BYTES - 200)
        fits = json.dumps({"jsonrpc": "2.0", "id": 78, "method": "public/test", "params": {"pad": padding}})
        assert len(fits) <= MAX_FRAME_BYTES
        ws.send(fits)
        assert json.loads(ws.recv(timeout=1))["result"]["version"]
        assert rpc(ws, "public/test")["result"]  # the connection stays open
    assert emu.oversized == 1
    assert emu.all_subscriptions == set()
    assert [r["id"] for r in emu.requests][:1] == [78]  # the refused frame is not a request


# ------------------------------------------------------------------ real instruments


@pytest.mark.parametrize(
    "channel",
    [
        "book.BTC-PERPETUAL.100ms",
        "book.ETH-PERPETUAL.none.10.100ms",
        "ticker.BTC-PERPETUAL.raw",
        "trades.BTC-PERPETUAL.100ms",
        "trades.future.BTC.raw",
        "deribit_price_index.btc_usd",
        "user.orders.any.any.raw",
        "user.orders.BTC-PERPETUAL.raw",
        "user.trades.future.ETH.100ms",
        "user.portfolio.btc",
        "chart.trades.BTC-PERPETUAL.1",
        "platform_state",
    ],
)
def test_channels_of_real_instruments_exist(channel):
    assert channel_exists(channel)


@pytest.mark.parametrize(
    "channel",
    [
        "book.NOPE-PERPETUAL.100ms",  # no such instrument
        "book.BTC-PERPETUAL.1s",  # no such interval
        "deribit_price_index.doge_usd",  # no such index
        "trades.future.XYZ.raw",  # no such currency
        "user.orders.any.any",  # interval missing
        "a.b.c",
        "",
    ],
)
def test_channels_of_unknown_instruments_or_shapes_do_not_exist(channel):
    assert not channel_exists(channel)


def test_subscribe_grants_only_channels_that_exist():
    """Deribit leaves a channel of an unknown instrument out of the result; check_channels=False grants any."""
    wanted = ["ticker.BTC-PERPETUAL.100ms", "ticker.NOPE-PERPETUAL.100ms", "a.b"]
    with DeribitEmulator() as emu, connect(emu.url) as ws:
        assert rpc(ws, "public/subscribe", channels=wanted)["result"] == ["ticker.BTC-PERPETUAL.100ms"]
    with DeribitEmulator(instruments={*INSTRUMENTS, "NOPE-PERPETUAL"}) as emu, connect(emu.url) as ws:
        assert rpc(ws, "public/subscribe", channels=wanted)["result"] == wanted[:2]
    with DeribitEmulator(check_channels=False) as emu, connect(emu.url) as ws:
        assert rpc(ws, "public/subscribe", channels=wanted)["result"] == wanted


# ------------------------------------------------------------------ auth and tokens


def test_tokens_expire_and_refresh_tokens_work_once_per_connection():
    """An expired token is 13009; refresh_token renews it once; tokens die with the connection."""
    with DeribitEmulator(credentials=CREDS, expires_in=ms(100)) as emu:
        with connect(emu.url) as ws:
            first = auth(ws)["result"]
            assert "result" in rpc(ws, "private/subscribe", channels=["user.orders.any.any.raw"])
            emu.expire_access_tokens()
            assert rpc(ws, "private/subscribe", channels=["user.orders.any.any.raw"])["error"]["code"] == 13009
            renewed = rpc(ws, "public/auth", grant_type="refresh_token", refresh_token=first["refresh_token"])
            assert "result" in rpc(ws, "private/subscribe", channels=["user.orders.any.any.raw"])
            again = rpc(ws, "public/auth", grant_type="refresh_token", refresh_token=first["refresh_token"])
            assert again["error"]["code"] == 13004
            latest = renewed["result"]["refresh_token"]
        with connect(emu.url) as ws:
            stale = rpc(ws, "public/auth", grant_type="refresh_token", refresh_token=latest)
            assert stale["error"]["code"] == 13004  # connection-scoped: gone with its connection
    assert emu.unauthorized == 1


def test_revoked_refresh_tokens_are_refused():
    """revoke_refresh_tokens(): the next refresh grant is 13004 while the access token still works."""
    with DeribitEmulator(credentials=CREDS) as emu, connect(emu.url) as ws:
        token = auth(ws)["result"]["refresh_token"]
        assert emu.revoke_refresh_tokens() == 1
        assert rpc(ws, "public/auth", grant_type="refresh_token", refresh_token=token)["error"]["code"] == 13004
        assert "result" in rpc(ws, "private/subscribe", channels=["user.orders.any.any.raw"])


def test_client_signature_is_verified_with_the_secret():
    """HMAC-SHA256 of timestamp\\nnonce\\ndata: the right secret passes, a wrong one or altered data is 13004."""
    ts = int(time.time() * 1000)
    with DeribitEmulator(credentials=CREDS) as emu, connect(emu.url) as ws:
        params = {"grant_type": "client_signature", "client_id": "cid", "timestamp": ts, "nonce": "n1", "data": "d"}
        good = rpc(ws, "public/auth", **params, signature=signature_for("s3cret", ts, "n1", "d"))
        assert good["result"]["token_type"] == "bearer"
        wrong_secret = rpc(ws, "public/auth", **params, signature=signature_for("other", ts, "n1", "d"))
        assert wrong_secret["error"]["code"] == 13004
        altered = rpc(ws, "public/auth", **{**params, "data": "e"}, signature=signature_for("s3cret", ts, "n1", "d"))
        assert altered["error"]["code"] == 13004
    assert [ok for _, grant, ok in emu.auth_log if grant == "client_signature"] == [True, False, False]


def test_auth_grants_the_requested_scope_and_hands_out_realistic_tokens():
    """scope is granted (with the account); tokens are as long as Deribit's (214 characters)."""
    with DeribitEmulator(credentials=CREDS) as emu, connect(emu.url) as ws:
        result = rpc(
            ws,
            "public/auth",
            grant_type="client_credentials",
            client_id="cid",
            client_secret="s3cret",
            scope="session:a",
        )["result"]
        assert result["scope"] == "session:a mainaccount"
        refreshed = rpc(ws, "public/auth", grant_type="refresh_token", refresh_token=result["refresh_token"])
        assert refreshed["result"]["scope"] == "session:a mainaccount"
        assert len(result["access_token"]) == len(result["refresh_token"]) == 214
    assert emu.tokens_issued[:2] == [result["access_token"], result["refresh_token"]]
